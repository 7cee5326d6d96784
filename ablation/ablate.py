"""Does the curation pay? ``python -m ablation [--config ablation.yaml]``.

Each curation variant of the same raw input (``ablation.config``) is curated into its
own run, then the same model is trained on its token shards for the same number of tokens once
per seed (``python -m trainer``), and scored in bits per byte per domain on the reference text
(the run's last ``val_bpb/<domain>``, else ``python -m trainer.eval``). Everything lands under
``<out_dir>/<name>/``, a local folder or, for a URL (``s3://bucket/runs``), the object store:

    curation/<variant>/           the variant's curation run (stats.json: its funnel and retention)
    train/<variant>/seed-<s>/     the training run (metrics.jsonl, checkpoints/, bpb.json)
    results.json, results.md      bits per byte per variant and domain over seeds, and retention
    bpb.png                       the same as a plot, with the seed spread

The trainer runs as a command, as a user runs it, not imported: each training is a process of its
own, and several at a time share one GPU (``ablation.training``, which also runs alone where the
GPUs are). Every variant encodes with one tokenizer (the first variant's, unless the base config
names one), so equal token budgets are equal amounts of text. A rerun skips every curation run and
training run that already finished.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from ablation.config import AblationConfig, Variant, load_ablation_config
from ablation.report import plot, render_markdown, variant_summary
from ablation.training import plan_entry, run_plan
from pipelines.config import ConfigError, WebCorpusConfig
from pipelines.ray_runtime import ray_session
from pipelines.web_corpus import run_web_corpus
from tokenizer.files import atomic_write_bytes, atomic_write_json, write_error
from tokenizer.store_path import AnyPath

logger = logging.getLogger("ablation.ablate")


def _finished(cfg: WebCorpusConfig) -> dict | None:
    stats_path = cfg.run_dir / "stats.json"
    if not stats_path.exists():
        return None
    stats = json.loads(stats_path.read_text())
    same = stats.get("status") == "complete" and stats.get("config_fingerprint") == cfg.fingerprint()
    return stats if same and stats.get("output") == "tokens" else None


def _absolute(path: AnyPath) -> AnyPath:
    """A local path made absolute (the runs read it from their own folders); a URL already is."""
    return path.resolve() if isinstance(path, Path) else path


def curate_variants(cfg: AblationConfig, variants: list[Variant], progress: bool) -> dict[str, dict]:
    """Each variant's curation run (or the finished one from an earlier attempt): name -> stats.json."""
    out: dict[str, dict] = {}
    shared: AnyPath | None = None  # the first variant's tokenizer, which every later one encodes with
    first = cfg.curation(variants[0])
    with ray_session(first.ray):
        for variant in variants:
            run_cfg = cfg.curation(variant, shared)
            if not run_cfg.shards.enabled:
                raise ConfigError(f"variant {variant.name}: shards.enabled=false leaves nothing to train on")
            stats = _finished(run_cfg)
            if stats is None:
                logger.info("curating variant %s into %s", variant.name, run_cfg.run_dir)
                stats = run_web_corpus(run_cfg, progress=progress)
            else:
                logger.info("variant %s: curation already complete in %s", variant.name, run_cfg.run_dir)
            out[variant.name] = stats
            if shared is None and not run_cfg.tokenizer.model_path:
                shared = _absolute(run_cfg.run_dir / "tokenizer" / "spm.model")
    return out


def train_plan(cfg: AblationConfig, variants: list[Variant]) -> list[dict]:
    """Every (variant, seed) training run, in order: the same model and token budget for each."""
    train = cfg.train.model_dump()
    return [
        plan_entry(train, v.name, cfg.curation(v).run_dir / "tokens", cfg.root / "train" / v.name / f"seed-{seed}", seed)
        for v in variants
        for seed in cfg.train.seeds
    ]


def run_ablation(cfg: AblationConfig, progress: bool = True, only: str | None = None, parallel: int = 1) -> dict:
    """Curate every variant, train and score every seed (``parallel`` at a time), and write the results.

    ``only="curate"`` stops after the curation runs and ``train_plan.json`` (for training elsewhere:
    ``ablation.training``); a later call takes every finished run as it is.
    """
    variants = cfg.resolved_variants()
    cfg.root.mkdir(parents=True, exist_ok=True)
    atomic_write_json(cfg.root / "ablation.json", cfg.model_dump(mode="json"))
    stats = curate_variants(cfg, variants, progress)
    plan = train_plan(cfg, variants)
    atomic_write_json(cfg.root / "train_plan.json", plan)
    if only == "curate":
        return {"name": cfg.name, "train_plan": str(cfg.root / "train_plan.json"), "runs": len(plan)}
    results = run_plan(plan, parallel)
    summaries = []
    for variant in variants:
        runs = {e["seed"]: r for e, r in zip(plan, results) if e["variant"] == variant.name}
        summaries.append(variant_summary(variant.name, variant.label, variant.overrides, stats[variant.name], runs))
    summary = {
        "name": cfg.name,
        "seeds": cfg.train.seeds,
        "tokens_trained": sorted({t for s in summaries for t in s["tokens_trained"]}),
        "variants": summaries,
    }
    atomic_write_json(cfg.root / "results.json", summary)
    atomic_write_bytes(cfg.root / "results.md", render_markdown(summary).encode())
    plot(summary, cfg.root / "bpb.png")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ablation", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="ablation YAML (default: the ladder on the bundled corpus, tiny model, 3 seeds)")
    parser.add_argument("--only", choices=["curate"], help="curate every variant and write train_plan.json, train nothing")
    parser.add_argument("--parallel", type=int, default=1, help="training runs at a time (small models share one GPU well)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_ablation_config(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        summary = run_ablation(cfg, progress=not args.no_progress, only=args.only, parallel=args.parallel)
    except ConfigError as exc:
        write_error(cfg.root, f"{type(exc).__name__}: {exc}\n")
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        write_error(cfg.root, f"{type(exc).__name__}: {exc}\n")
        raise
    if args.only:
        print(f"curated; {summary['runs']} training runs in {summary['train_plan']} (python -m ablation.training --plan ...)")
        return 0
    print(render_markdown(summary))
    print(f"results: {cfg.root / 'results.md'}, {cfg.root / 'results.json'}, {cfg.root / 'bpb.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
