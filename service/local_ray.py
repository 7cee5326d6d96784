"""Starting and stopping Ray nodes on this machine with ``ray start``: the service's default cluster,
and the two-node cluster the tests use in place of docker-compose.

Each ``ray start`` runs in a new session, so every process of that node (GCS, raylet, dashboard,
agents, and the workers, each in a process group of its own) is in that session, and stopping the
node kills that session's processes — without ``ray stop``, which would kill every Ray on the
machine, other clusters included.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

logger = logging.getLogger(__name__)


def ray_env() -> dict[str, str]:
    # `ray start --head` turns token authentication on; every client and node must then use it too.
    return {**os.environ, "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "token")}


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """``n`` distinct free ports: held open together while drawn, since a port released by one
    draw can be handed out again by the next (CI once gave Ray's client server and dashboard
    agent the same one, and `ray start` refused it)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _ray_cli() -> str:
    return str(Path(sys.executable).with_name("ray")) if Path(sys.executable).with_name("ray").exists() else shutil.which("ray") or "ray"


@dataclass
class RayNode:
    pgid: int
    gcs_address: str
    dashboard_url: str | None = None  # head only
    temp_dir: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


# A port drawn free can be taken before Ray binds it: every outgoing connection on the machine gets
# one from the same ephemeral range (CI once saw the GCS port taken by another test's Ray cluster).
START_ATTEMPTS = 3
T = TypeVar("T")
# what `ray start` says then (the GCS after ~40 s of waiting for it, the dashboard at once), and uvicorn
_PORT_TAKEN = ("address already in use", "failed to start the grpc server", "failed to start gcs", "already occupied")


class PortTaken(RuntimeError):
    """A process failed to start because a port it was given was in use by then."""


def port_was_taken(said: str) -> bool:
    """Whether a failed start's output says one of its ports was in use."""
    said = said.lower()
    return any(marker in said for marker in _PORT_TAKEN)


def _start(args: list[str], log_path: Path) -> int:
    offset = log_path.stat().st_size if log_path.exists() else 0
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([_ray_cli(), "start", *args], stdout=log, stderr=subprocess.STDOUT, env=ray_env(), start_new_session=True)
        rc = proc.wait(timeout=180)
    if rc != 0:
        stop_node(proc.pid)
        with open(log_path, "rb") as log:
            log.seek(offset)
            said = log.read().decode("utf-8", errors="replace")
        error = PortTaken if port_was_taken(said) else RuntimeError
        raise error(f"`ray start {' '.join(args)}` failed (exit {rc}); see {log_path}")
    return proc.pid


def with_fresh_ports(start: Callable[[], T], what: str, binder: str = "Ray") -> T:
    """``start()``, drawing its ports anew, again while it fails only because a port was taken
    (``PortTaken``), up to ``START_ATTEMPTS`` times in all."""
    for _ in range(START_ATTEMPTS - 1):
        try:
            return start()
        except PortTaken as exc:
            logger.warning("%s: a port was taken before %s bound it (%s); trying again with other ports", what, binder, exc)
    return start()


def start_head(num_cpus: int | None = None, log_dir: Path | None = None) -> RayNode:
    """A Ray head on loopback with the dashboard (the Jobs API) on a free port."""
    return with_fresh_ports(lambda: _start_head(num_cpus, log_dir), "Ray head")


def _start_head(num_cpus: int | None, log_dir: Path | None) -> RayNode:
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    gcs, dashboard, agent, client = free_ports(4)
    args = [
        "--head", "--node-ip-address=127.0.0.1", f"--port={gcs}", f"--dashboard-port={dashboard}", "--dashboard-host=127.0.0.1",
        "--include-dashboard=true", "--disable-usage-stats", f"--temp-dir={temp_dir}", f"--dashboard-agent-listen-port={agent}",
        f"--ray-client-server-port={client}",
    ] + ([f"--num-cpus={num_cpus}"] if num_cpus else [])
    pgid = _start(args, Path(log_dir or temp_dir) / "ray-head.log")
    node = RayNode(pgid, f"127.0.0.1:{gcs}", f"http://127.0.0.1:{dashboard}", temp_dir)
    wait_for_dashboard(node.dashboard_url)
    logger.info("started a Ray head at %s (Jobs API %s)", node.gcs_address, node.dashboard_url)
    return node


def start_worker(gcs_address: str, num_cpus: int | None = None, log_dir: Path | None = None) -> RayNode:
    """Another Ray node joining ``gcs_address`` (a second node on this machine needs its own agent port)."""
    log_dir = Path(log_dir or tempfile.gettempdir())

    def start() -> RayNode:
        args = [f"--address={gcs_address}", "--node-ip-address=127.0.0.1", "--disable-usage-stats",
                f"--dashboard-agent-listen-port={free_port()}"] + ([f"--num-cpus={num_cpus}"] if num_cpus else [])
        return RayNode(_start(args, log_dir / f"ray-worker-{gcs_address.replace(':', '_')}.log"), gcs_address)

    return with_fresh_ports(start, "Ray worker node")


def _session(sid: int) -> list[int]:
    """The processes of session ``sid`` (a ``ray start`` made it: nothing else is in it)."""
    pids = []
    for entry in os.scandir("/proc") if os.path.isdir("/proc") else []:
        try:
            if entry.name.isdigit() and os.getsid(int(entry.name)) == sid:
                pids.append(int(entry.name))
        except OSError:  # gone meanwhile
            pass
    return pids


def stop_node(pgid: int) -> None:
    """SIGKILL every process of the node: its process group, and every process of its session.
    Ray starts each worker in a process group of its own (in the node's session), so the group
    alone left the workers running, training on, until they noticed their raylet was gone."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for _ in range(3):  # a process forked meanwhile is in the session too
        for pid in _session(pgid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def dashboard_alive(url: str, timeout: float = 2.0) -> bool:
    """Whether the dashboard answers at all (with token auth on, an unauthenticated call gets 401)."""
    try:
        with urllib.request.urlopen(f"{url}/api/version", timeout=timeout) as resp:
            return resp.status == 200
    except urllib.error.HTTPError as exc:
        return exc.code in (401, 403)
    except OSError:
        return False


def wait_for_dashboard(url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not dashboard_alive(url):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the Ray dashboard at {url} did not answer within {timeout_s:.0f} s")
        time.sleep(0.5)
