"""What ``benchmarks.pipeline`` reads out of each run, and how it prints and plots it."""

from __future__ import annotations

import glob
import gzip
import json
import re
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

AFTER_FINEWEB = ("quality_classifier", "domain_classifier", "pii")  # our stages after the FineWeb filter


def _stage(stats: dict, name: str) -> dict | None:
    return next((s for s in stats["stages"] if s["name"] == name), None)


def _urls(paths: list[str]) -> set[str]:
    return {u for p in paths for u in pq.read_table(p, columns=["url"]).column("url").to_pylist()}


def _phases(progress: dict) -> dict[str, float]:
    """Wall seconds per phase of our run; dedup's and mix's many steps grouped under their phase."""
    phases: dict[str, list[float]] = {}
    for step in progress["steps"]:
        phase = step["name"].split(":")[0]
        span = phases.setdefault(phase, [step["started"], step["finished"] or step["started"]])
        span[1] = max(span[1], step["finished"] or step["started"])
    return {k: round(v[1] - v[0], 3) for k, v in phases.items()}


def summarize_ours(stats: dict, progress: dict, proc: dict, run: Path) -> dict:
    fineweb = _stage(stats, "fineweb_quality")
    kept_after_fineweb = glob.glob(str(run / "filtered" / "*.parquet")) + [p for s in AFTER_FINEWEB for p in glob.glob(str(run / "rejected" / s / "*.parquet"))]
    filtered = _urls(glob.glob(str(run / "filtered" / "*.parquet")))
    dedup = _stage(stats, "dedup")
    curate_stages = [s for s in stats["stages"] if s["name"] not in ("dedup", "mix")]
    return {
        "process": proc,
        "wall_s": proc["wall_s"],
        "run_wall_s": stats["wall_time_s"],
        "records": _stage(stats, "read")["total"]["in"]["docs"],
        "kept_after_fineweb": fineweb["total"]["kept"]["docs"] if fineweb else None,
        "kept_after_fineweb_urls": sorted(_urls(kept_after_fineweb)),
        "kept_after_filters": len(filtered),
        "kept_after_filters_urls": sorted(filtered),
        "kept_after_dedup": dedup["total"]["kept"]["docs"] if dedup else None,
        "tokens_out": stats["stages"][-1]["total"]["kept"]["tokens"],
        "phases_s": _phases(progress),
        "stage_time_s": {s["name"]: s["wall_time_s"] for s in curate_stages},
        "token_count_time_s": stats.get("token_count_time_s"),
        "retention": stats.get("retention"),
    }


def _block_key(name: str) -> str:
    """datatrove's block names carry emoji: keep the words ("FILTER: Gopher Repetition" -> gopher_repetition)."""
    words = re.sub(r"[^A-Za-z0-9 -]+", " ", name.split(":", 1)[-1]).strip().lower()
    return re.sub(r"[ -]+", "_", words)


def summarize_datatrove(summary: dict, proc: dict, work: Path) -> dict:
    blocks = {(step, _block_key(b["name"])): b for step, v in summary["steps"].items() for b in v.get("stats", [])}
    reader = blocks[("filter", "warc")]["stats"]
    fineweb = blocks.get(("filter", "fineweb_quality"), {}).get("stats", {})
    dedup = blocks.get(("minhash_filter", "minhash_stage_4"), {}).get("stats", {})
    urls = set()
    for path in glob.glob(str(work / "output" / "filtered" / "*.jsonl.gz")):
        with gzip.open(path, "rt") as f:
            urls.update(json.loads(line)["metadata"].get("url") for line in f)
    return {
        "process": proc,
        "wall_s": proc["wall_s"],
        "records": reader["documents"]["total"] if isinstance(reader.get("documents"), dict) else reader.get("documents"),
        "kept_after_fineweb": fineweb.get("forwarded", 0),
        "kept_after_fineweb_urls": sorted(urls),
        "kept_after_dedup": dedup.get("forwarded"),
        "phases_s": {k: round(v["wall_s"], 3) for k, v in summary["steps"].items()},
        "stage_time_s": {key: round(b["time_stats"]["total"], 3) for (step, key), b in blocks.items() if step == "filter" and "time_stats" in b},
    }


def word_f1(reference: str, candidate: str) -> float:
    """Bag-of-words F1 of ``candidate`` against ``reference`` (1.0 when both are empty)."""
    ref, cand = Counter(reference.split()), Counter(candidate.split())
    if not ref and not cand:
        return 1.0
    common = sum((ref & cand).values())
    if not common:
        return 0.0
    precision, recall = common / sum(cand.values()), common / sum(ref.values())
    return 2 * precision * recall / (precision + recall)


def _sample_pages(corpus: Path, n: int) -> list[str]:
    """Every k-th HTML record of the corpus's shards, decoded, about ``n`` of them."""
    from warcio.archiveiterator import ArchiveIterator

    manifest = json.loads((corpus / "manifest.json").read_text())
    step = max(1, manifest["records"] // max(1, n))
    pages, i = [], 0
    for shard in sorted(corpus.glob("*.warc.gz")):
        with open(shard, "rb") as f:
            for record in ArchiveIterator(f):
                if record.rec_type == "response":
                    if i % step == 0:
                        pages.append(record.content_stream().read().decode("utf-8", errors="replace"))
                    i += 1
    return pages[:n]


def agreement(corpus: Path, ours: Path, fast: Path, n_pages: int) -> dict:
    """resiliparse against trafilatura: word F1 per page, and the documents both runs keep."""
    import trafilatura
    from resiliparse.extract.html2text import extract_plain_text

    f1s = []
    for html in _sample_pages(corpus, n_pages):
        reference = trafilatura.extract(html, favor_precision=True, deduplicate=False) or ""
        candidate = extract_plain_text(html, main_content=True) or ""
        if reference.strip() or candidate.strip():
            f1s.append(word_f1(reference, candidate))
    a = _urls(glob.glob(str(ours / "filtered" / "*.parquet")))
    b = _urls(glob.glob(str(fast / "filtered" / "*.parquet")))
    return {
        "pages_compared": len(f1s),
        "mean_word_f1": sum(f1s) / max(1, len(f1s)),
        "kept_trafilatura": len(a),
        "kept_fast": len(b),
        "kept_both": len(a & b),
        "kept_jaccard": len(a & b) / max(1, len(a | b)),
    }


def _mib(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB"


def _shares(times: dict[str, float], top: int = 12) -> str:
    total = sum(times.values()) or 1.0
    rows = sorted(times.items(), key=lambda kv: -kv[1])[:top]
    return "\n".join(f"    {name:<28}{t:>9.1f} s {100 * t / total:>6.1f}%" for name, t in rows)


def _side(label: str, side: dict, records: int, html_bytes: int, cores: int) -> list[str]:
    wall, peak = side["wall_s"], side["process"]["peak_rss"]
    return [
        f"{label}",
        f"  wall {wall:.1f} s   {records / wall / cores:.1f} docs/s per core   {html_bytes / 1e6 / wall / cores:.2f} MB/s per core (HTML)",
        f"  CPU time of the process tree {side['process'].get('cpu_s', 0):.0f} s = {1000 * side['process'].get('cpu_s', 0) / records:.1f} ms per record "
        "(the cost a busy machine changes least)",
        "  CPU by process: " + ", ".join(f"{k} {v:.0f} s" for k, v in list(side["process"].get("cpu_by_process", {}).items())[:6]),
        f"  peak RSS: driver {_mib(peak['driver'])}, largest other process {_mib(peak['largest_other'])} ({peak['largest_other_name']}), "
        f"tree sum {_mib(peak['tree'])} over up to {peak['processes']} processes",
        f"  records read {side['records']}, kept after FineWeb filter {side['kept_after_fineweb']}, after dedup {side['kept_after_dedup']}",
        "  phases (wall):",
        _shares(side["phases_s"]),
        "  per-document stages (time summed over workers; share of the stage total):",
        _shares(side["stage_time_s"]),
        *_token_counting(side),
    ]


def _token_counting(side: dict) -> list[str]:
    """What the funnel's exact token counts cost, against the whole process tree's CPU time."""
    spent, cpu = side.get("token_count_time_s"), side["process"].get("cpu_s")
    if spent is None or not cpu:
        return []
    return [f"  token counting (every stage's tokens in and out, summed over workers): {spent:.1f} s = {100 * spent / cpu:.1f}% of the CPU time"]


def render(result: dict, note: str = "") -> str:
    corpus, cores = result["corpus"], result["cores"]
    records, html = corpus["records"], corpus["html_bytes"]
    lines = [
        f"benchmarks.pipeline: scale corpus {result['size']} ({records} records, {html / 1e9:.3f} GB HTML, {corpus['shards']} WARC shards, "
        f"{corpus['languages']} languages, by domain {corpus['records_by_domain']})",
        f"machine: {result['machine']}",
        f"versions: {result['versions']}",
        f"load average before {tuple(round(x, 2) for x in result['load_before'])}, after {tuple(round(x, 2) for x in result['load_after'])}: "
        "the machine is shared with other agents' work, so wall times are noisy",
    ]
    if note:
        lines.append(f"note: {note}")
    if result.get("ours_overrides"):
        lines.append(f"ours ran with: {' '.join(result['ours_overrides'])}")
    lines.append("")
    sides = [("ours (trafilatura)", "ours"), ("ours (fast path: resiliparse + FastWARC)", "ours_fast"), ("datatrove (LocalPipelineExecutor)", "datatrove")]
    for label, key in sides:
        if key in result:
            lines += _side(label, result[key], records, html, cores) + [""]
    dt = result.get("datatrove")
    if dt:
        ours = result["ours"]
        same_records = ours["records"] == dt["records"] == records
        a, b = set(ours["kept_after_fineweb_urls"]), set(dt["kept_after_fineweb_urls"])
        lines += [
            f"records: ours {ours['records']}, datatrove {dt['records']}, corpus {records}: {'match' if same_records else 'DIFFER'}",
            f"kept after the FineWeb filter: ours {ours['kept_after_fineweb']}, datatrove {dt['kept_after_fineweb']}; "
            f"the same URLs: {len(a & b)} in both, {len(a - b)} ours only, {len(b - a)} datatrove only",
            f"throughput ratio ours/datatrove (trafilatura): {dt['wall_s'] / ours['wall_s']:.2f}x by wall time, "
            f"{dt['process'].get('cpu_s', 0) / max(1e-9, ours['process'].get('cpu_s', 0)):.2f}x by CPU time",
        ]
        if "ours_fast" in result:
            fast = result["ours_fast"]
            lines.append(f"throughput ratio ours/datatrove (fast path): {dt['wall_s'] / fast['wall_s']:.2f}x by wall time, "
                         f"{dt['process'].get('cpu_s', 0) / max(1e-9, fast['process'].get('cpu_s', 0)):.2f}x by CPU time")
    ag = result.get("agreement")
    if ag:
        lines += [
            "",
            f"fast path against trafilatura: mean word-level F1 {ag['mean_word_f1']:.3f} over {ag['pages_compared']} pages; "
            f"kept after every per-document filter: trafilatura {ag['kept_trafilatura']}, resiliparse {ag['kept_fast']}, both {ag['kept_both']} "
            f"(Jaccard {ag['kept_jaccard']:.3f}); retention {ag['kept_trafilatura'] / records:.2%} vs {ag['kept_fast'] / records:.2%} of records",
        ]
    return "\n".join(lines) + "\n"


def scaling(results_dir: Path, cores: int) -> str:
    """Time per document across every size measured so far; also plotted to a PNG beside the table."""
    results = []
    for path in results_dir.glob(f"pipeline-*-{cores}core.json"):
        r = json.loads(path.read_text())
        if r.get("size") in ("0.1", "0.3", "1"):
            results.append(r)
    if len(results) < 1:
        return ""
    results.sort(key=lambda r: float(r["size"]))
    sides = [k for k in ("ours", "ours_fast", "datatrove") if any(k in r for r in results)]
    header = f"{'size':>5}{'records':>9}" + "".join(f"{s + ' wall ms/doc':>24}{'CPU ms/doc':>12}{'vs first':>9}{'driver RSS':>12}{'worker RSS':>12}" for s in sides)
    lines = [f"scaling on {cores} cores (per document, whole run; 'vs first': CPU time per document relative to the smallest size "
             "measured, the figure a busy shared machine changes least; 'worker RSS': the largest process but the driver)", header]
    base: dict[str, float] = {}
    for r in results:
        row = f"{r['size']:>5}{r['corpus']['records']:>9}"
        for s in sides:
            if s in r:
                ms = 1000 * r[s]["wall_s"] / r["corpus"]["records"]
                cpu = 1000 * r[s]["process"].get("cpu_s", 0) / r["corpus"]["records"]
                base.setdefault(s, cpu or 1.0)
                peak = r[s]["process"]["peak_rss"]
                row += f"{ms:>24.2f}{cpu:>12.2f}{cpu / base[s]:>9.2f}{_mib(peak['driver']):>12}{_mib(peak['largest_other']):>12}"
            else:
                row += f"{'-':>24}{'':>12}{'':>9}{'':>12}{'':>12}"
        lines.append(row)
    lines += ["", *_work_per_document(results, sides)]
    text = "\n".join(lines) + "\n"
    (results_dir / f"pipeline-scaling-{cores}core.txt").write_text(text)
    _plot(results, sides, results_dir / f"pipeline-scaling-{cores}core.png")
    return text


def _work_per_document(results: list[dict], sides: list[str]) -> list[str]:
    """The whole run's CPU split into what each document costs and what the run costs once.

    A run's CPU per document falls from the smallest size to the largest while each document's
    work stays the same: start-up (Ray, every worker process's imports and models, the extraction
    child), the tokenizer's training and the shard-level phases are spread over more documents. So
    this table gives, per size, the time spent in the per-document stages and in token counting
    (summed over workers) per record, and the rest of the run's CPU in seconds.
    """
    header = f"{'size':>5}" + "".join(f"{s + ' work ms/doc':>24}{'vs first':>9}{'rest CPU s':>12}" for s in sides)
    lines = ["per-document work: the per-document stages' time and token counting, summed over workers, per record "
             "('vs first': relative to the smallest size); 'rest': the process tree's CPU outside them (start-up, Ray, "
             "the tokenizer's training, dedup, mix, reading and writing)", header]
    base: dict[str, float] = {}
    for r in results:
        records, row = r["corpus"]["records"], f"{r['size']:>5}"
        for s in sides:
            if s in r:
                work_s = sum(r[s]["stage_time_s"].values()) + r[s].get("token_count_time_s", 0.0)
                ms = 1000 * work_s / records
                base.setdefault(s, ms or 1.0)
                row += f"{ms:>24.2f}{ms / base[s]:>9.2f}{r[s]['process'].get('cpu_s', 0) - work_s:>12.0f}"
            else:
                row += f"{'-':>24}{'':>9}{'':>12}"
        lines.append(row)
    return lines


def _plot(results: list[dict], sides: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for s in sides:
        pts = [(r["corpus"]["records"], 1000 * r[s]["process"].get("cpu_s", 0) / r["corpus"]["records"]) for r in results if s in r]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=s)
    ax.set_xscale("log")
    ax.set_xlabel("records (scale corpus 0.1 / 0.3 / 1 GB of HTML)")
    ax.set_ylabel("CPU ms per document (process tree)")
    ax.set_title(f"whole pipeline, {results[0]['cores']} cores (shared machine)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
