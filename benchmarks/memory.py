"""Peak memory of a whole curation run over the bundled corpus repeated N times.

    python -m benchmarks.memory [--copies 20] [--base bundled|third] [--report out.json] [--keep]

Every input file of the bundled run (the default config's sources) is linked N times under new
names, so the run reads N times the corpus, and dedup then finds the N-1 copies of every page as
exact duplicates: a realistic stress for the run-wide steps. While the run goes, the process tree
(the driver, its local Ray: GCS, raylet, agents, workers and their extraction sandboxes) is sampled
every 0.2 s from /proc:

- the tree's total PSS (proportional set size: shared pages, such as Ray's object store and the
  libraries, are split between the processes that map them, so the sum is what the run costs);
- the peak RSS of each worker, by the Ray task it was running (``ray::<function>`` is a Ray worker's
  title while it runs a task), which gives the dedup steps' per-worker memory;
- the driver's own peak RSS during the run (sampled), and its high-water mark (VmHWM) over its life.

A worker's RSS includes what it holds from earlier tasks: Ray reuses workers, so a worker that
curated a shard (fastText models, trafilatura, the tokenizer loaded) still holds them while it runs
a dedup step. The per-task peaks are therefore what a worker weighs while running that task.

The baseline named in the ratio column is the same run over the corpus once (``--copies 1``),
measured in the same invocation: how memory grows with the input. It asserts nothing for the test
suite; tests/test_memory.py runs a smaller copy count and asserts the bounds stated here.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

from benchmarks.common import machine

# Bounds for this 2-core, 24 GiB machine, stated in RELIABILITY.md. The tree bound holds for any
# copy count: curation streams each shard, and dedup and mix hold one partition or shard per task.
TREE_BOUND_GIB = 6.0
WORKER_BOUND_GIB = 1.5
DRIVER_BOUND_GIB = 1.0
DEDUP_TASKS = ("map_shard", "bucket_partition", "attach_source_signatures", "verify_candidates", "star_partition",
               "label_partition", "survivor_partition", "apply_shard")


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = defaultdict(list)
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children[ppid].append(int(entry.name))
    return children


def process_tree(root: int) -> list[int]:
    children, out, todo = _children(), [root], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _title(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return "?"
    first = argv[0].decode(errors="replace").split(" ")[0]
    return first if first.startswith("ray::") else Path(first).name


def _rollup(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in bytes."""
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1]) * 1024
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1]) * 1024
    except OSError:
        pass
    return rss, pss


class TreeMemory:
    """Samples the memory of a process and all its descendants on a background thread."""

    def __init__(self, root: int | None = None, interval_s: float = 0.2, report: Path | None = None):
        self.root, self.interval_s, self.report = root or os.getpid(), interval_s, report
        self.peak_tree_pss = 0
        self.peak_driver_rss = 0
        self.peak_rss_by_title: dict[str, int] = defaultdict(int)
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        total = 0
        for pid in process_tree(self.root):
            rss, pss = _rollup(pid)
            total += pss
            if pid == self.root:
                self.peak_driver_rss = max(self.peak_driver_rss, rss)
            else:
                title = _title(pid)
                self.peak_rss_by_title[title] = max(self.peak_rss_by_title[title], rss)
        self.peak_tree_pss = max(self.peak_tree_pss, total)
        self.samples += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            if self.report is not None and self.samples % 50 == 0:  # the peaks so far, for a run cut short
                self.report.write_text(json.dumps({"samples": self.samples, "peak_tree_pss": self.peak_tree_pss,
                                                   "peak_driver_rss": self.peak_driver_rss, "workers": self.worker_peaks()}))
            self._stop.wait(self.interval_s)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def driver_high_water_rss(self) -> int:
        """The kernel's high-water mark of the driver's RSS, over its whole life (not only this run)."""
        with open(f"/proc/{self.root}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        return 0

    def worker_peaks(self) -> dict[str, int]:
        return {t: v for t, v in self.peak_rss_by_title.items() if t.startswith("ray::") and t != "ray::IDLE"}

    def dedup_peaks(self) -> dict[str, int]:
        return {t: v for t, v in self.worker_peaks().items() if t.removeprefix("ray::") in DEDUP_TASKS}


def repeated_sources(cfg, copies: int, folder: Path) -> list[dict]:
    """The config's sources, each file linked ``copies`` times under distinct names (distinct document ids)."""
    sources = []
    for source in cfg.sources:
        paths = []
        for pattern in source.paths:
            for path in sorted(glob.glob(pattern)):
                stem, _, suffix = Path(path).name.partition(".")
                for k in range(copies):
                    link = folder / source.name / f"{stem}-copy{k:03d}.{suffix}"
                    link.parent.mkdir(parents=True, exist_ok=True)
                    if not link.exists():
                        link.symlink_to(Path(path).resolve())
                    paths.append(str(link))
        sources.append({**source.model_dump(mode="json"), "paths": paths})
    return sources


def measure(copies: int, work: Path, base_config=None, overrides: list[str] | None = None, report: Path | None = None,
            interval_s: float = 0.2) -> dict:
    """Run the pipeline over ``copies`` copies of the config's inputs under ``work``; return its memory."""
    from pipelines.config_loading import load_config
    from pipelines.web_corpus import run_web_corpus

    base = base_config or load_config()
    tree = {"runs_dir": str(work / "runs"), "run_name": f"x{copies}", "sources": repeated_sources(base, copies, work / "inputs")}
    for key in ("tokenizer", "dedup", "shards"):
        tree[key] = getattr(base, key).model_dump(mode="json")
    path = work / f"x{copies}.yaml"
    path.write_text(json.dumps(tree))
    cfg = load_config(path, overrides or [])
    start = time.perf_counter()
    with TreeMemory(interval_s=interval_s, report=report) as mem:
        stats = run_web_corpus(cfg, overwrite=True, progress=False)
    dedup = stats["dedup"] or {}
    return {
        "copies": copies,
        "shards": stats["shards"],
        "documents": stats["stages"][0]["total"]["in"]["docs"],
        "input_bytes": stats["stages"][0]["total"]["in"]["bytes"],
        "dedup_documents": dedup.get("documents"),
        "dedup_removed": dedup.get("removed"),
        "dedup_partitions": dedup.get("partitions"),
        "wall_time_s": round(time.perf_counter() - start, 1),
        "peak_tree_pss": mem.peak_tree_pss,
        "driver_peak_rss": mem.peak_driver_rss,  # sampled during the run: a test process has a past
        "driver_high_water_rss": mem.driver_high_water_rss,
        "worker_peaks": dict(sorted(mem.worker_peaks().items())),
        "dedup_worker_peaks": dict(sorted(mem.dedup_peaks().items())),
        "samples": mem.samples,
    }


def _third():
    """Three files of the bundled corpus, one per kind: a finance and a general shard, and the real crawl (untagged)."""
    from benchmarks.common import CORPUS
    from pipelines.config import WebCorpusConfig

    return WebCorpusConfig.model_validate({"sources": [
        {"name": "fin", "format": "warc", "domain": "finance", "paths": [str(CORPUS / "warc" / "finance-00000.warc.gz")]},
        {"name": "gen", "format": "warc", "domain": "general", "paths": [str(CORPUS / "warc" / "general-00000.warc.gz")]},
        {"name": "iana", "format": "warc", "domain": None, "paths": [str(CORPUS / "real_crawl" / "iana.warc.gz")]},
    ], "tokenizer": {"vocab_size": 2000}})


def check_bounds(result: dict) -> list[str]:
    gib = 2**30
    problems = []
    if result["peak_tree_pss"] > TREE_BOUND_GIB * gib:
        problems.append(f"tree PSS {result['peak_tree_pss'] / gib:.2f} GiB > {TREE_BOUND_GIB} GiB")
    if result["driver_peak_rss"] > DRIVER_BOUND_GIB * gib:
        problems.append(f"driver RSS {result['driver_peak_rss'] / gib:.2f} GiB > {DRIVER_BOUND_GIB} GiB")
    for title, rss in result["worker_peaks"].items():
        if rss > WORKER_BOUND_GIB * gib:
            problems.append(f"{title} RSS {rss / gib:.2f} GiB > {WORKER_BOUND_GIB} GiB")
    return problems


def _mib(n: int) -> str:
    return f"{n / 2**20:8.0f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=20)
    parser.add_argument("--base", choices=["bundled", "third"], default="bundled",
                        help="bundled: the default run's 9 files; third: 3 of them (finance-00000, general-00000, the IANA crawl), "
                        "a third of the work, as in the tests' small runs")
    parser.add_argument("--keep", action="store_true", help="keep the run folders")
    parser.add_argument("--report", type=Path, help="write each run's result (and the peaks so far, while it runs) here as JSON")
    args = parser.parse_args()
    import ray

    work = Path(tempfile.mkdtemp(prefix="memory-bench-"))
    try:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="WARNING")
        results = []
        base = _third() if args.base == "third" else None
        for copies in (1, args.copies):
            report = args.report and args.report.with_name(f"{args.report.stem}-x{copies}.json")
            results.append(measure(copies, work, base, report=report))
            if report:
                report.write_text(json.dumps(results[-1], indent=1))
        ray.shutdown()
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    base, big = results
    print(f"machine: {machine()}")
    print(f"input: the {'bundled corpus (9 files)' if args.base == 'bundled' else 'third of the bundled corpus (3 files)'} x1 and x{args.copies}")
    print(f"bounds: process tree PSS <= {TREE_BOUND_GIB} GiB, any Ray worker RSS <= {WORKER_BOUND_GIB} GiB, driver RSS <= {DRIVER_BOUND_GIB} GiB")
    print(f"baseline: the same run over the corpus once (x1), in the same invocation\n")
    print(f"{'':32s} {'x1':>12s} {'x' + str(args.copies):>12s} {'ratio':>7s}")
    rows = [
        ("shards", base["shards"], big["shards"], str),
        ("documents read", base["documents"], big["documents"], str),
        ("input MiB (records)", base["input_bytes"], big["input_bytes"], lambda n: f"{n / 2**20:.1f}"),
        ("dedup: documents in", base["dedup_documents"], big["dedup_documents"], str),
        ("dedup: removed", base["dedup_removed"], big["dedup_removed"], str),
        ("dedup: partitions", base["dedup_partitions"], big["dedup_partitions"], str),
        ("wall time s", base["wall_time_s"], big["wall_time_s"], str),
        ("peak PSS, whole process tree", base["peak_tree_pss"], big["peak_tree_pss"], _mib),
        ("peak RSS, driver (sampled)", base["driver_peak_rss"], big["driver_peak_rss"], _mib),
        ("driver RSS high-water mark", base["driver_high_water_rss"], big["driver_high_water_rss"], _mib),
    ]
    titles = sorted(set(base["worker_peaks"]) | set(big["worker_peaks"]))
    rows += [(f"peak RSS, worker {t}", base["worker_peaks"].get(t, 0), big["worker_peaks"].get(t, 0), _mib) for t in titles]
    for name, a, b, fmt in rows:
        ratio = f"{b / a:7.2f}" if a else "      -"
        print(f"{name:32s} {fmt(a):>12s} {fmt(b):>12s} {ratio}")
    dedup = big["dedup_worker_peaks"]
    print(f"\ndedup per-worker peak RSS at x{args.copies}: " + ", ".join(f"{t.removeprefix('ray::')} {v / 2**20:.0f} MiB" for t, v in dedup.items()))
    print(f"samples: {base['samples']} and {big['samples']} (every 0.2 s)")
    problems = check_bounds(big)
    print("within bounds" if not problems else "OVER BOUNDS: " + "; ".join(problems))


if __name__ == "__main__":
    main()
