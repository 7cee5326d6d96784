"""Run a command and poll its whole process tree's memory (psutil), as a user's shell would see it."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import psutil


class TreeMonitor(threading.Thread):
    """Peak RSS of the root process, of the largest other process in its tree, and of the tree's sum.

    The sum counts pages shared between processes (Ray's object store, forked workers' libraries)
    once per process, so it is an upper bound of what the tree holds.
    """

    def __init__(self, pid: int, interval_s: float = 0.2):
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.interval_s = interval_s
        self.done = threading.Event()
        self.peak = {"driver": 0, "largest_other": 0, "largest_other_name": "", "tree": 0, "processes": 0}
        self.cpu_s: dict[int, float] = {}  # user + system seconds per process, as last seen
        self.kind: dict[int, str] = {}  # what each process is, to say where the CPU time went

    def cpu_by_kind(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for pid, cpu in self.cpu_s.items():
            out[self.kind.get(pid, "?")] = out.get(self.kind.get(pid, "?"), 0.0) + cpu
        return dict(sorted(((k, round(v, 1)) for k, v in out.items()), key=lambda kv: -kv[1]))

    def cpu_total(self) -> float:
        """CPU seconds of the tree (a process's last 0.2 s before it exits can be missed): load hardly changes it."""
        return sum(self.cpu_s.values())

    def sample(self) -> None:
        try:
            procs = [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        rss = {}
        for proc in procs:
            try:
                rss[proc] = proc.memory_info().rss
                times = proc.cpu_times()
                self.cpu_s[proc.pid] = max(self.cpu_s.get(proc.pid, 0.0), times.user + times.system)
                if proc.pid not in self.kind or self.kind[proc.pid] in _TRANSIENT_NAMES:  # a Ray worker is renamed once it runs a task
                    self.kind[proc.pid] = "driver" if proc == self.root else _kind(proc)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        peak = self.peak
        peak["driver"] = max(peak["driver"], rss.get(self.root, 0))
        peak["tree"] = max(peak["tree"], sum(rss.values()))
        peak["processes"] = max(peak["processes"], len(rss))
        others = [(v, p) for p, v in rss.items() if p != self.root]
        if others:
            value, proc = max(others, key=lambda x: x[0])
            if value > peak["largest_other"]:
                try:
                    name = " ".join(proc.cmdline()[:3])[:80] or proc.name()
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    name = "?"
                peak["largest_other"], peak["largest_other_name"] = value, name

    def run(self) -> None:
        while not self.done.wait(self.interval_s):
            self.sample()


_TRANSIENT_NAMES = ("default_worker.py", "ray::IDLE", "?")


def _kind(proc: psutil.Process) -> str:
    """A short name: ``ray::curate_shard``, ``raylet``, ``gcs_server``, ``python -m X`` ..."""
    try:
        cmd = proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return "?"
    if not cmd:
        return proc.name()
    if cmd[0].startswith("ray::"):
        return cmd[0].split()[0]
    if "-m" in cmd[:3]:
        return "python -m " + cmd[cmd.index("-m") + 1]
    if "-c" in cmd[:3]:
        return "python -c (worker pool)"
    return cmd[0].rsplit("/", 1)[-1] if len(cmd) == 1 or not cmd[0].endswith("python") else cmd[1].rsplit("/", 1)[-1]


def run_monitored(cmd: list[str], env: dict, log: Path, interval_s: float = 0.2) -> dict:
    """Run ``cmd`` (stdout and stderr to ``log``); its wall time, exit code and peak memory in bytes."""
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        monitor = TreeMonitor(proc.pid, interval_s)
        monitor.start()
        returncode = proc.wait()
        monitor.done.set()
        monitor.join()
    return {"wall_s": time.perf_counter() - start, "cpu_s": monitor.cpu_total(), "cpu_by_process": monitor.cpu_by_kind(), "returncode": returncode, "peak_rss": monitor.peak, "log": str(log)}
