"""The retention funnel: per-shard stats merged into the run's ``stats.json``, and its table."""

from __future__ import annotations

from collections.abc import Iterable

from curation.core.stats import Counts, StageStats, ratio
from pipelines.stages import EXTRACT, PII
from tokenizer.manifest import Manifest
from tokenizer.retention import Retention


def merge_shard_stats(shard_payloads: Iterable[dict], stage_order: list[str]) -> list[StageStats]:
    merged = {name: StageStats(name) for name in stage_order}
    for payload in shard_payloads:
        for stage in payload["stages"]:
            merged[stage["name"]].merge(StageStats.from_dict(stage))
    return [merged[name] for name in stage_order]


def retention(stages: list[StageStats], manifest: Manifest | None = None) -> Retention:
    """What survives every stage, against what came in and against the extracted text.

    ``tokens_vs_extracted`` is the headline figure: tokens kept over the tokens of the text that
    extraction produced (the raw extracted input), both counted with the run's tokenizer.
    """
    first, last = stages[0].total(), stages[-1].total()
    extract = next((s for s in stages if s.name == EXTRACT), None)
    extracted = extract.total().out if extract else first.in_
    per_domain = {}
    # untagged documents enter under "untagged" and leave under the domain the classifier gave them
    for domain in sorted(set(stages[0].domains) | set(stages[-1].domains)):
        d_in = stages[0].domains[domain].in_ if domain in stages[0].domains else Counts()
        d_kept = stages[-1].domains[domain].out if domain in stages[-1].domains else Counts()
        if extract is None:
            d_extracted = d_in
        else:
            d_extracted = extract.domains[domain].out if domain in extract.domains else Counts()
        per_domain[domain] = {
            "docs_in": d_in.docs,
            "docs_kept": d_kept.docs,
            "tokens_extracted": d_extracted.tokens,
            "tokens_kept": d_kept.tokens,
            "docs": ratio(d_kept.docs, d_in.docs),
            "tokens_vs_extracted": ratio(d_kept.tokens, d_extracted.tokens),
        }
    return Retention(
        docs=ratio(last.out.docs, first.in_.docs),
        bytes_vs_raw=ratio(last.out.bytes, first.in_.bytes),
        tokens_vs_raw=ratio(last.out.tokens, first.in_.tokens),
        tokens_vs_extracted=ratio(last.out.tokens, extracted.tokens),
        tokens_extracted=extracted.tokens,
        tokens_kept=last.out.tokens,
        per_domain=per_domain,
        # the headline: tokens in the shards (EOS included) over tokens of the extracted text
        tokens_in_shards=manifest.tokens if manifest is not None else None,
        shard_tokens_vs_extracted=ratio(manifest.tokens, extracted.tokens) if manifest is not None else None,
    )


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
