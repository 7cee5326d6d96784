"""The whole pipeline at scale: ours against datatrove's own equivalent pipeline, on the same WARCs.

    python -m benchmarks.pipeline --size 0.1 [--size 0.3 ...] [--fast-path] [--skip-datatrove]

For each size of the scale corpus (``scripts/build_scale_corpus.py``; built or verified first),
in the same invocation and on the same cores:

1. ours: ``python -m pipelines.web_corpus --config <size>/curation.yaml`` in a fresh run folder;
2. with ``--fast-path``: ours again with ``extract.engine=resiliparse read.warc_reader=fastwarc``,
   and its agreement with trafilatura (word-level F1 per page, documents kept, retention);
3. datatrove: ``benchmarks.datatrove_pipeline`` (its blocks, the same filter values, its MinHash
   dedup and tokenizer) with one worker per core.

Each runs as a child process whose whole process tree is polled with psutil for memory. Printed
and written to ``benchmarks/results/pipeline-<size>-<cores>core.{txt,json}``: the machine, docs/s
and MB/s (of HTML) per core, wall time, peak RSS (driver, largest other process, the tree's sum),
each stage's share of time, the record counts on both sides (they must match), documents kept
after the FineWeb filter on both sides, the ratio ours/datatrove; the scaling across every size
measured so far goes to ``pipeline-scaling-<cores>core.{txt,png}``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import ROOT, machine, versions
from benchmarks.pipeline_report import agreement, render, scaling, summarize_datatrove, summarize_ours
from benchmarks.process_tree import run_monitored

RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_CACHE = Path(os.environ.get("CURATION_SCALE_CORPUS", Path.home() / ".cache" / "curation-scale-corpus"))
FAST_PATH = ["extract.engine=resiliparse", "read.warc_reader=fastwarc"]


def ensure_corpus(size: str, cache: Path) -> Path:
    """The size's folder (built, or verified against its manifest's sha256, by the build script)."""
    subprocess.run([sys.executable, str(ROOT / "scripts" / "build_scale_corpus.py"), "--size", size, "--cache-dir", str(cache)], check=True)
    return cache / size


def mini_corpus(dest: Path, warcs: list[Path]) -> Path:
    """A corpus folder like a scale size's, from given WARCs (the test's tiny slice: no download)."""
    from warcio.archiveiterator import ArchiveIterator

    dest.mkdir(parents=True, exist_ok=True)
    shards, html_bytes = [], 0
    for warc in warcs:
        shutil.copy(warc, dest / warc.name)
        records = 0
        with open(warc, "rb") as f:
            for record in ArchiveIterator(f):
                if record.rec_type == "response":
                    records += 1
                    html_bytes += len(record.content_stream().read())
        shards.append({"file": warc.name, "records": records, "domain": warc.name.split("-")[0]})
    manifest = {"records": sum(s["records"] for s in shards), "html_bytes": html_bytes, "shards": shards, "languages": {},
                "records_by_domain": {d: sum(s["records"] for s in shards if s["domain"] == d) for d in ("finance", "general")}}
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=1))
    sources = [{"name": f"mini-{d}", "format": "warc", "domain": d, "paths": [str(dest / f"{d}-*.warc.gz")]} for d in ("finance", "general")]
    (dest / "curation.yaml").write_text(json.dumps({"run_name": "mini", "sources": sources}))  # JSON is YAML
    return dest


def _env() -> dict:
    # the worktree's code in the child processes and in Ray's workers too
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def run_ours(corpus: Path, work: Path, name: str, overrides: list[str], cores: int) -> dict:
    # datatrove's pipeline has no decontamination stage: without it both sides take the same decisions
    cmd = [sys.executable, "-m", "pipelines.web_corpus", "--config", str(corpus / "curation.yaml"), "--overwrite", "--no-progress",
           f"run_name={name}", f"runs_dir={work}", f"ray.num_cpus={cores}", "decontaminate.enabled=false", *overrides]
    proc = run_monitored(cmd, _env(), work / f"{name}.log")
    run = work / name
    if proc["returncode"] != 0:
        raise RuntimeError(f"our pipeline failed (rc {proc['returncode']}); see {work / f'{name}.log'}")
    return summarize_ours(json.loads((run / "stats.json").read_text()), json.loads((run / "progress.json").read_text()), proc, run)


def run_datatrove(corpus: Path, work: Path, cores: int) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.datatrove_pipeline", "--config", str(corpus / "curation.yaml"), "--work", str(work / "datatrove"), "--workers", str(cores)]
    proc = run_monitored(cmd, _env(), work / "datatrove.log")
    if proc["returncode"] != 0:
        raise RuntimeError(f"datatrove's pipeline failed (rc {proc['returncode']}); see {work / 'datatrove.log'}")
    return summarize_datatrove(json.loads((work / "datatrove" / "summary.json").read_text()), proc, work / "datatrove")


def bench_size(corpus: Path, label: str, cores: int, work: Path, fast_path: bool, skip_datatrove: bool, f1_pages: int, only_fast: bool = False,
               overrides: tuple[str, ...] = ()) -> dict:
    manifest = json.loads((corpus / "manifest.json").read_text())
    result: dict = {
        "size": label,
        "machine": machine(),
        "cores": cores,
        "load_before": os.getloadavg(),
        "corpus": {k: manifest.get(k) for k in ("records", "html_bytes", "records_by_domain")} | {"languages": len(manifest.get("languages", {})), "shards": len(manifest["shards"])},
        "versions": versions("datatrove", "trafilatura", "ray", "resiliparse", "fastwarc"),
        "ours_overrides": list(overrides),
    }
    if only_fast:  # the fast path alone, for its scaling across sizes
        result["ours_fast"] = run_ours(corpus, work, "ours-fast", [*FAST_PATH, *overrides], cores)
        result["load_after"] = os.getloadavg()
        return result
    print(f"[{time.strftime('%H:%M:%S')}] {label}: ours (trafilatura)", file=sys.stderr, flush=True)
    result["ours"] = run_ours(corpus, work, "ours", list(overrides), cores)
    if fast_path:
        print(f"[{time.strftime('%H:%M:%S')}] {label}: ours (fast path)", file=sys.stderr, flush=True)
        result["ours_fast"] = run_ours(corpus, work, "ours-fast", [*FAST_PATH, *overrides], cores)
        result["agreement"] = agreement(corpus, work / "ours", work / "ours-fast", f1_pages)
    if not skip_datatrove:
        print(f"[{time.strftime('%H:%M:%S')}] {label}: datatrove", file=sys.stderr, flush=True)
        result["datatrove"] = run_datatrove(corpus, work, cores)
    result["load_after"] = os.getloadavg()
    return result


def write_results(result: dict, results_dir: Path, note: str) -> str:
    text = render(result, note)
    stem = f"pipeline-{result['size']}-{result['cores']}core"
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / f"{stem}.txt").write_text(text)
    (results_dir / f"{stem}.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", action="append", choices=["0.1", "0.3", "1"], help="scale corpus size in GB of HTML (repeatable)")
    parser.add_argument("--corpus-dir", type=Path, help="a ready corpus folder (curation.yaml + manifest.json) instead of --size")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--cores", type=int, default=os.cpu_count())
    parser.add_argument("--fast-path", action="store_true", help="also run ours with resiliparse + FastWARC")
    parser.add_argument("--skip-datatrove", action="store_true")
    parser.add_argument("--only-fast", action="store_true", help="only ours with the fast path (its scaling across sizes)")
    parser.add_argument("--worker-max-tasks", type=int, help="ours with ray.worker_max_tasks=N: a worker process exits after N tasks (bounds its memory)")
    parser.add_argument("--count-html-tokens", action="store_true", help="ours with read.count_html_tokens=true: every raw HTML record's tokens are counted too (off by default)")
    parser.add_argument("--f1-pages", type=int, default=500, help="pages compared word by word between the extractors")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument("--work-dir", type=Path, help="keep the runs here (default: a temporary folder, removed)")
    parser.add_argument("--note", default="", help="a line printed with the results (e.g. what else loaded the machine)")
    args = parser.parse_args(argv)
    corpora = [(args.corpus_dir, args.corpus_dir.name)] if args.corpus_dir else [(ensure_corpus(s, args.cache_dir), s) for s in (args.size or ["0.1"])]
    for corpus, label in corpora:
        work = Path(tempfile.mkdtemp(prefix=f"bench-pipeline-{label}-", dir=args.work_dir))
        try:
            overrides = ((f"ray.worker_max_tasks={args.worker_max_tasks}",) if args.worker_max_tasks else ()) + (
                ("read.count_html_tokens=true",) if args.count_html_tokens else ())
            result = bench_size(corpus, label, args.cores, work, args.fast_path, args.skip_datatrove, args.f1_pages, args.only_fast, overrides)
        finally:
            if args.work_dir is None:
                shutil.rmtree(work, ignore_errors=True)
        print(write_results(result, args.results_dir, args.note), flush=True)
    table = scaling(args.results_dir, args.cores)
    if table:
        print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
