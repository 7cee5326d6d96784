"""What the API shows of a job's output folder: progress, the funnel, rejected samples, metrics.

Everything here reads files the job writes (``progress.json``, ``stats/curate/*.json``,
``stats.json``, ``rejected/``, ``metrics.jsonl``); the job and the API share nothing else.
"""

from __future__ import annotations

import json
from pathlib import Path

from curation.core.stats import retention
from pipelines.funnel import merge_shard_stats
from pipelines.run_dir import RunDir
from pipelines.stages import CURATE, EXTRACT, TOKENIZER, phase_of
from tokenizer.store_path import StorePath, as_path, readable


def read_json(path: Path | StorePath) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # not written yet, or being replaced: the next poll sees it
        return None


def curation_progress(run_dir: Path, stage_names: list[str]) -> dict:
    """Per-stage percent from the run's step log: a stage advances with the steps of its phase
    (the per-document stages all with the curate step, as one task runs them all on a shard)."""
    log = read_json(RunDir(run_dir).progress) or {"steps": []}
    steps = {s["name"]: s for s in log["steps"]}

    def fraction(names: list[str]) -> float:
        if not names:
            return 0.0
        return sum(steps[n]["done"] / steps[n]["total"] if n in steps and steps[n]["total"] else 0.0 for n in names) / len(names)

    stages = []
    for name in stage_names:
        phase = phase_of(name)
        # the steps a phase always runs count from the start; those it runs only sometimes once begun
        pct = fraction(list(phase.steps) + [n for n in steps if phase.owns_step(n) and n not in phase.steps])
        stages.append({"stage": name, "percent": round(100 * pct, 1)})
    tokenizer = fraction(list(TOKENIZER.steps)) if any(n in steps for n in TOKENIZER.steps) else None
    overall = sum(s["percent"] for s in stages) / len(stages) if stages else 0.0
    return {
        "overall_percent": round(overall, 1),
        "tokenizer_sample_percent": None if tokenizer is None else round(100 * tokenizer, 1),
        "stages": stages,
        "steps": log["steps"],
        "updated": log.get("updated"),
    }


def curation_funnel(run_dir: Path, stage_names: list[str]) -> dict | None:
    """The run's ``stats.json`` once written (complete or failed); before that, the funnel of the
    shards completed so far, merged the way the run itself merges them (``partial: true``)."""
    run = RunDir(run_dir)
    stats = read_json(run.stats)
    if stats is not None:
        return {"partial": False, **stats}
    payloads = [p for path in sorted(run.shard_stats_dir(CURATE.name).glob("*.json")) if (p := read_json(path))]
    if not payloads:
        return None
    stages = merge_shard_stats(payloads, [n for n in stage_names if phase_of(n) is CURATE])
    return {
        "partial": True,
        "status": "running",
        "completed_shards": {CURATE.name: len(payloads)},
        "stages": [s.to_dict() for s in stages],
        "retention": retention(stages, EXTRACT).to_dict(),
    }


def rejected_sample(run_dir: Path, stage: str, reason: str | None, limit: int, offset: int = 0, text_chars: int = 500) -> tuple[list[dict], int]:
    """Up to ``limit`` rejected documents of one stage (optionally one reason) from the ``offset``-th
    on, in shard order, and how many there are in all (a page and the count to page through)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    rows: list[dict] = []
    total = 0
    for path in sorted(RunDir(run_dir).rejected_dir(stage).glob("*.parquet")):
        reasons = pq.read_table(readable(path), columns=["reason"])["reason"]
        mask = pc.equal(reasons, reason) if reason is not None else None
        n = (pc.sum(mask).as_py() or 0) if mask is not None else len(reasons)
        start = max(0, offset - total)  # of this shard's matching rows
        total += n
        if len(rows) >= limit or start >= n:
            continue
        table = pq.read_table(readable(path), columns=["id", "domain", "url", "reason", "text"])
        if mask is not None:
            table = table.filter(mask)
        for row in table.slice(start, limit - len(rows)).to_pylist():
            row["text"] = (row["text"] or "")[:text_chars]
            rows.append(row)
    return rows, total


def training_metrics(out_dir: Path, max_points: int = 2000) -> list[dict]:
    """The training job's metrics.jsonl lines (the loss curve), thinned evenly past ``max_points``."""
    path = as_path(out_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:  # the line being written right now
            continue
    if len(records) > max_points:
        stride = -(-len(records) // max_points)
        records = records[::stride] + ([records[-1]] if (len(records) - 1) % stride else [])
    return records


def training_workers(out_dir: Path) -> list[dict]:
    """Where each Ray Train worker of a run runs now (rank, node, pid, GPUs, start), as each rewrites it on a (re)start."""
    workers = [w for path in sorted((as_path(out_dir) / "workers").glob("rank-*.json")) if (w := read_json(path))]
    return sorted(workers, key=lambda w: w.get("rank", 0))
