"""An ablation's results: bits per byte per variant and domain over seeds, and each variant's retention.

Written three ways from one summary: ``results.json``, ``results.md`` (a table) and ``bpb.png``
(a plot of the mean with the seed spread, each seed's value shown).
"""

from __future__ import annotations

import statistics

from tokenizer.store_path import AnyPath, written


def spread(values: list[float]) -> dict:
    """Mean, sample standard deviation (0 for one seed), min and max."""
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def retention_of(stats: dict) -> dict:
    """The figures of a curation run's ``stats.json`` that say how much of the input it kept."""
    r = stats["retention"]
    return {
        "docs": r.get("docs"),
        "tokens_vs_extracted": r.get("tokens_vs_extracted"),
        "tokens_in_shards": r.get("tokens_in_shards"),
        "shard_tokens_vs_extracted": r.get("shard_tokens_vs_extracted"),
        "rejected_docs": {s["name"]: s["total"]["rejected"]["docs"] for s in stats["stages"] if s["total"]["rejected"]["docs"]},
    }


def variant_summary(name: str, label: str | None, overrides: list[str], stats: dict, runs: dict[int, dict]) -> dict:
    """``runs``: seed -> {"bpb": {domain: value}, "tokens_trained": n}."""
    domains = sorted({d for r in runs.values() for d in r["bpb"]})
    return {
        "name": name,
        "label": label or name,
        "overrides": overrides,
        "retention": retention_of(stats),
        "tokens_trained": sorted({r["tokens_trained"] for r in runs.values()}),
        "bpb": {d: {**spread([r["bpb"][d] for r in runs.values()]), "seeds": {s: r["bpb"][d] for s, r in runs.items()}} for d in domains},
    }


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f}%"


def render_markdown(summary: dict) -> str:
    variants = summary["variants"]
    domains = sorted({d for v in variants for d in v["bpb"]})
    seeds = summary["seeds"]
    head = ["variant", "what", "docs kept", "tokens kept / extracted", "tokens in shards"] + [f"bpb {d} (mean ± std)" for d in domains]
    lines = [
        f"# Ablation `{summary['name']}`",
        "",
        f"Bits per byte on the reference text (lower is better), {len(seeds)} seeds ({', '.join(map(str, seeds))}), "
        f"each run trained on {', '.join(f'{t:,}' for t in summary['tokens_trained'])} tokens.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for v in variants:
        r = v["retention"]
        cells = [v["name"], v["label"], _pct(r["docs"]), _pct(r["tokens_vs_extracted"]), f"{r['tokens_in_shards'] or 0:,}"]
        cells += [f"{v['bpb'][d]['mean']:.4f} ± {v['bpb'][d]['std']:.4f}" if d in v["bpb"] else "–" for d in domains]
        lines.append("| " + " | ".join(cells) + " |")
    lines += _against(variants, domains, baseline="full")
    lines += ["", "Per seed:", "", "| variant | domain | " + " | ".join(f"seed {s}" for s in seeds) + " |", "|---|---|" + "---|" * len(seeds)]
    for v in variants:
        for d in domains:
            values = v["bpb"].get(d, {}).get("seeds", {})
            lines.append(f"| {v['name']} | {d} | " + " | ".join(f"{values[s]:.4f}" if s in values else "–" for s in seeds) + " |")
    return "\n".join(lines) + "\n"


def versus(a: dict, b: dict) -> tuple[float, float]:
    """Mean bits per byte of ``a`` minus ``b`` and the pooled seed standard deviation of the two."""
    return a["mean"] - b["mean"], ((a["std"] ** 2 + b["std"] ** 2) / 2) ** 0.5


def _against(variants: list[dict], domains: list[str], baseline: str) -> list[str]:
    """Each variant against the baseline: positive when the variant is worse (more bits per byte)."""
    base = next((v for v in variants if v["name"] == baseline), None)
    if base is None or len(variants) < 2:
        return []
    lines = [
        "", f"Against `{baseline}` (Δ = variant − {baseline}; above 0: {baseline} is better; σ = the two variants' pooled seed "
        "standard deviation; ** where |Δ| > 2σ):", "",
        "| variant | " + " | ".join(f"Δ bpb {d}" for d in domains) + " |", "|---|" + "---|" * len(domains),
    ]
    for v in variants:
        if v is base:
            continue
        cells = []
        for d in domains:
            if d not in v["bpb"] or d not in base["bpb"]:
                cells.append("–")
                continue
            delta, sigma = versus(v["bpb"][d], base["bpb"][d])
            mark = "**" if abs(delta) > 2 * sigma else ""
            cells.append(f"{mark}{delta:+.4f}{mark} ({abs(delta) / sigma:.1f}σ)" if sigma > 0 else f"{delta:+.4f}")
        lines.append(f"| {v['name']} | " + " | ".join(cells) + " |")
    return lines


def plot(summary: dict, path: AnyPath) -> None:
    """Mean bits per byte per variant and domain, error bars from min to max over seeds, seeds as dots."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    variants = summary["variants"]
    domains = sorted({d for v in variants for d in v["bpb"]})
    fig, ax = plt.subplots(figsize=(max(6.0, 1.4 * len(variants) + 2), 4.5))
    width = 0.6 / max(1, len(domains))
    for j, domain in enumerate(domains):
        offset = (j - (len(domains) - 1) / 2) * width
        xs, means, lows, highs = [], [], [], []
        for i, v in enumerate(variants):
            if domain not in v["bpb"]:
                continue
            b = v["bpb"][domain]
            xs.append(i + offset)
            means.append(b["mean"])
            lows.append(b["mean"] - b["min"])
            highs.append(b["max"] - b["mean"])
            ax.scatter([i + offset] * len(b["seeds"]), list(b["seeds"].values()), s=12, color=f"C{j}", alpha=0.5, zorder=3)
        ax.errorbar(xs, means, yerr=[lows, highs], fmt="o", capsize=4, color=f"C{j}", label=domain, zorder=4)
    labels = [f"{v['name']}\n{_pct(v['retention']['tokens_vs_extracted'])} of tokens kept" for v in variants]
    crowded = len(variants) > 6  # long names side by side overlap: slant them
    ax.set_xticks(range(len(variants)), labels, fontsize=8, rotation=30 if crowded else 0, ha="right" if crowded else "center")
    ax.set_ylabel("bits per byte (held-out reference text)")
    ax.set_title(f"{summary['name']}: {len(summary['seeds'])} seeds per variant (bar: min–max)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(title="domain")
    ax.margins(x=0.1)
    fig.tight_layout()
    with written(path) as local:  # matplotlib writes a local file: renamed into place, or uploaded to a store
        fig.savefig(local, dpi=120, format="png")
    plt.close(fig)
