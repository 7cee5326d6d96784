"""The retention funnel: per-shard stats merged into the run's ``stats.json``, and its table."""

from __future__ import annotations

from collections.abc import Iterable

from curation.core.stats import StageStats
from pipelines.stages import PII


def merge_shard_stats(shard_payloads: Iterable[dict], stage_order: list[str]) -> list[StageStats]:
    merged = {name: StageStats(name) for name in stage_order}
    for payload in shard_payloads:
        for stage in payload["stages"]:
            merged[stage["name"]].merge(StageStats.from_dict(stage))
    return [merged[name] for name in stage_order]


def _top_reasons(stage: StageStats, n: int = 3) -> str:
    reasons = stage.total().reasons
    top = sorted(reasons.items(), key=lambda kv: (-kv[1].docs, kv[0]))[:n]
    return ", ".join(f"{r} {c.docs}" for r, c in top)


def render_table(stats: dict) -> str:
    """A plain-text table of the funnel for the console."""
    header = f"{'stage':<20}{'docs in':>9}{'kept':>8}{'rej':>7}{'tokens in':>12}{'tokens out':>12}{'keep%':>7}  top rejection reasons"
    lines = [header, "-" * len(header)]
    for stage in stats["stages"]:
        total = stage["total"]
        keep = 100 * total["kept"]["docs"] / total["in"]["docs"] if total["in"]["docs"] else 0.0
        reasons = _top_reasons(StageStats.from_dict(stage))
        lines.append(
            f"{stage['name']:<20}{total['in']['docs']:>9}{total['kept']['docs']:>8}{total['rejected']['docs']:>7}"
            f"{total['in']['tokens']:>12}{total['out']['tokens']:>12}{keep:>6.1f}%  {reasons}"
        )
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
        f"{100 * (r['tokens_vs_raw'] or 0):.2f}% of raw-record tokens"
    )
    return "\n".join(lines)
