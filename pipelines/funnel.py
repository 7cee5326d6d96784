"""The retention funnel: per-shard stats merged into the run's ``stats.json``, and its table."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable

from curation.core.stats import StageStats, domain_assignment, retention
from curation.readers.sources import Shard
from pipelines.config import WebCorpusConfig
from pipelines.ray_runtime import store_retries
from pipelines.run_dir import RunDir
from pipelines.stages import DEDUP, DOMAIN_CLASSIFIER, EXTRACT, PII, SHARD_PHASES, stage_names
from tokenizer.files import atomic_write_json
from tokenizer.storage import is_remote


def merge_shard_stats(shard_payloads: Iterable[dict], stage_order: list[str]) -> list[StageStats]:
    merged = {name: StageStats(name) for name in stage_order}
    for payload in shard_payloads:
        for stage in payload["stages"]:
            merged[stage["name"]].merge(StageStats.from_dict(stage))
    return [merged[name] for name in stage_order]


def write_funnel(cfg: WebCorpusConfig, run: RunDir, shards: list[Shard], start: float, tokenizer, dedup, mix_stats, manifest, error: str | None = None) -> dict:
    """Merge the per-shard funnels that exist into ``stats.json`` (all of them unless the run failed)."""
    payloads = [
        json.loads(path.read_text())
        for phase in (p.name for p in SHARD_PHASES)
        for s in shards
        if (path := run.shard_stats(phase, s.name)).exists()
    ]
    if mix_stats is not None:
        payloads.append({"wall_time_s": mix_stats.wall_time_s, "stages": [mix_stats.to_dict()]})
    stages = merge_shard_stats(payloads, stage_names(cfg))
    if dedup:  # the stage's own time is only its last step; the phase's wall time says what it cost
        next(s for s in stages if s.name == DEDUP.name).wall_time_s = dedup["wall_time_s"]
    stats = {
        "run": cfg.run_name,
        "status": "failed" if error else "complete",
        "error": error,
        "config_fingerprint": cfg.fingerprint(),
        "tokenizer": tokenizer and {"sha256": tokenizer.sha256, "vocab_size": tokenizer.vocab_size, "eos_id": tokenizer.eos_id},
        "token_basis": "tokens of the document text entering each stage (raw record bytes for `read`), "
        "counted exactly with the run's tokenizer, EOS not included"
        + ("" if cfg.read.count_html_tokens else "; HTML records not counted until extraction's output (read.count_html_tokens=false): their tokens are 0 before it"),
        "shards": len(shards),
        "completed_shards": {p.name: sum(run.shard_stats(p.name, s.name).exists() for s in shards) for p in SHARD_PHASES},
        "stages": [s.to_dict() for s in stages],
        "retention": retention(stages, EXTRACT, manifest.tokens if manifest else None, cfg.read.count_html_tokens).to_dict(),
        "domain_assignment": next((domain_assignment(s) for s in stages if s.name == DOMAIN_CLASSIFIER), None),
        "mix": manifest and {
            d: {k: v.get(k) for k in ("target_share", "achieved_share", "epochs", "tokens", "classified_tokens", "classified_documents")}
            for d, v in manifest.domains.items()
        },
        "dedup": dedup,
        "output": "tokens" if manifest else "deduped" if dedup else "filtered",
        "invariant_violations": [v for s in stages for v in s.invariant_violations()],
        "shard_time_s": round(sum(p["wall_time_s"] for p in payloads), 3),
        "token_count_time_s": round(sum(p.get("token_count_time_s", 0.0) for p in payloads), 3),
        "wall_time_s": round(time.perf_counter() - start, 3),
    }
    if uses_store(cfg):  # only then: a local run's stats.json stays what it always was
        stats["store"] = store_retries()
    atomic_write_json(run.stats, stats)
    return stats


def uses_store(cfg: WebCorpusConfig) -> bool:
    """Whether the run reads or writes an object store (its store figures then go into stats.json)."""
    return is_remote(cfg.runs_dir) or any(is_remote(p) for s in cfg.sources for p in s.paths)


def _top_reasons(stage: StageStats, n: int = 3) -> str:
    reasons = stage.total().reasons
    top = sorted(reasons.items(), key=lambda kv: (-kv[1].docs, kv[0]))[:n]
    return ", ".join(f"{r} {c.docs}" for r, c in top)


def render_table(stats: dict) -> str:
    """A plain-text table of the funnel for the console."""
    header = f"{'stage':<20}{'docs in':>9}{'kept':>8}{'rej':>7}{'tokens in':>12}{'tokens out':>12}{'keep%':>7}  top rejection reasons"
    lines = [header, "-" * len(header)]
    names = [stage["name"] for stage in stats["stages"]]
    # a run that left the HTML uncounted (read.count_html_tokens=false) has only its text records' tokens up to extraction
    uncounted = names[: names.index(EXTRACT) + 1] if stats["retention"].get("tokens_vs_raw") is None and EXTRACT in names else []
    for stage in stats["stages"]:
        total = stage["total"]
        keep = 100 * total["kept"]["docs"] / total["in"]["docs"] if total["in"]["docs"] else 0.0
        reasons = _top_reasons(StageStats.from_dict(stage))
        tokens_in = f"{total['in']['tokens']}*" if stage["name"] in uncounted else total["in"]["tokens"]
        tokens_out = f"{total['out']['tokens']}*" if stage["name"] in uncounted[:-1] else total["out"]["tokens"]
        lines.append(
            f"{stage['name']:<20}{total['in']['docs']:>9}{total['kept']['docs']:>8}{total['rejected']['docs']:>7}"
            f"{tokens_in:>12}{tokens_out:>12}{keep:>6.1f}%  {reasons}"
        )
    if uncounted:
        lines.append("* HTML records' tokens not counted before extraction (read.count_html_tokens=false): only text records'")
    for stage in stats["stages"]:
        counters = StageStats.from_dict(stage).total().counters
        if stage["name"] == PII:
            lines.append("pii redactions: " + (", ".join(f"{k.removeprefix('pii:')} {v}" for k, v in sorted(counters.items())) or "none"))
    assignment = stats.get("domain_assignment")
    if assignment:
        lines.append("domains after domain_classifier (docs / tokens): " + "; ".join(
            f"{d} tagged {v['tagged']['docs']} / {v['tagged']['tokens']}, classified {v['classified']['docs']} / {v['classified']['tokens']}"
            for d, v in assignment["per_domain"].items()
        ) + (f"; classifier agrees with source tags on {100 * assignment['tagged_agreement']:.1f}%" if assignment["tagged_agreement"] is not None else ""))
    r = stats["retention"]
    lines.append("")
    for domain, d in r["per_domain"].items():
        lines.append(
            f"{domain:<10} docs {d['docs_kept']}/{d['docs_in']}  tokens kept {d['tokens_kept']} of {d['tokens_extracted']} extracted"
            f" ({100 * (d['tokens_vs_extracted'] or 0):.2f}%)"
        )
    for domain, m in (stats.get("mix") or {}).items():
        if m.get("classified_tokens") is not None:
            lines.append(
                f"mix {domain:<8} {100 * m['achieved_share']:.2f}% of shard tokens (target {100 * m['target_share']:.0f}%): "
                f"{m['tokens'] - m['classified_tokens']} tokens tagged, {m['classified_tokens']} classified ({m['classified_documents']} documents)"
            )
    if "tokens_in_shards" in r:
        lines.append(
            f"token shards: {r['tokens_in_shards']} tokens (EOS included) = "
            f"{100 * (r['shard_tokens_vs_extracted'] or 0):.2f}% of the {r['tokens_extracted']} extracted tokens"
        )
    lines.append(
        f"retention: {100 * (r['tokens_vs_extracted'] or 0):.2f}% of extracted tokens "
        f"({r['tokens_kept']} of {r['tokens_extracted']}), {100 * (r['docs'] or 0):.2f}% of documents, "
        + (f"{100 * r['tokens_vs_raw']:.2f}% of raw-record tokens" if r["tokens_vs_raw"] is not None else "no raw-record tokens counted")
    )
    return "\n".join(lines)
