"""Does the curation pay? ``python -m pipelines.ablate [--config ablation.yaml]``.

Each curation variant of the same raw input (``pipelines.ablation_config``) is curated into its
own run, then the same model is trained on its token shards for the same number of tokens once
per seed (``python -m trainer``), and scored in bits per byte per domain on the reference text
(the run's last ``val_bpb/<domain>``, else ``python -m trainer.eval``). Everything lands under
``<out_dir>/<name>/``:

    curation/<variant>/           the variant's curation run (stats.json: its funnel and retention)
    train/<variant>/seed-<s>/     the training run (metrics.jsonl, checkpoints/, bpb.json)
    results.json, results.md      bits per byte per variant and domain over seeds, and retention
    bpb.png                       the same as a plot, with the seed spread

The trainer runs as a command, as a user runs it, not imported: the pipelines depend on the
curation and the tokenizer, never on the trainer. Every variant encodes with one tokenizer (the
first variant's, unless the base config names one), so equal token budgets are equal amounts of
text. A rerun skips every curation run and training run that already finished.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from pipelines.ablation_config import AblationConfig, Variant, load_ablation_config
from pipelines.ablation_report import plot, render_markdown, variant_summary
from pipelines.config import ConfigError, WebCorpusConfig
from pipelines.ray_runtime import ray_session
from pipelines.web_corpus import run_web_corpus
from tokenizer.files import atomic_write_bytes, atomic_write_json

logger = logging.getLogger("pipelines.ablate")


def _finished(cfg: WebCorpusConfig) -> dict | None:
    stats_path = cfg.run_dir / "stats.json"
    if not stats_path.exists():
        return None
    stats = json.loads(stats_path.read_text())
    same = stats.get("status") == "complete" and stats.get("config_fingerprint") == cfg.fingerprint()
    return stats if same and stats.get("output") == "tokens" else None


def curate_variants(cfg: AblationConfig, variants: list[Variant], progress: bool) -> dict[str, dict]:
    """Each variant's curation run (or the finished one from an earlier attempt): name -> stats.json."""
    out: dict[str, dict] = {}
    shared: Path | None = None  # the first variant's tokenizer, which every later one encodes with
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
                shared = (run_cfg.run_dir / "tokenizer" / "spm.model").resolve()
    return out


def _trainer(args: list[str], log: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")]))}
    with open(log, "a") as f:
        result = subprocess.run([sys.executable, "-m", *args], stdout=f, stderr=subprocess.STDOUT, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"`python -m {' '.join(args[:1])}` failed (exit {result.returncode}); see {log}")


def train_and_score(cfg: AblationConfig, variant: str, tokens: Path, seed: int) -> dict:
    """Train one seed on a variant's shards and score it: {"bpb": {domain: value}, "tokens_trained", "step"}."""
    out = cfg.root / "train" / variant / f"seed-{seed}"
    done = out / "bpb.json"
    if done.exists():
        return json.loads(done.read_text())
    out.mkdir(parents=True, exist_ok=True)
    t = cfg.train
    args = ["trainer", "--data", str(tokens), "--out", str(out), "--preset", t.preset, "--no-progress"]
    args += ["--config", t.config] if t.config else []
    # only the final checkpoint is needed (to score it); the seed is the ablation's, whatever the overrides say
    args += ["checkpoint.every=0", *t.overrides, f"optim.seed={seed}"]
    logger.info("training %s seed %d", variant, seed)
    _trainer(args, out / "train.log")
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    bpb = {k.split("/", 1)[1]: v for k, v in last.items() if k.startswith("val_bpb/")}
    if not bpb:  # the last step was not a validation step: score the final checkpoint
        _trainer(["trainer.eval", "--run", str(out), "--out", str(out / "eval_bpb.json")], out / "train.log")
        bpb = json.loads((out / "eval_bpb.json").read_text())["bpb"]
    run = json.loads((out / "config.json").read_text())
    result = {"bpb": bpb, "step": last["step"], "tokens_trained": last["step"] * run["optim"]["global_batch"] * run["model"]["seq_len"]}
    atomic_write_json(done, result)
    return result


def run_ablation(cfg: AblationConfig, progress: bool = True) -> dict:
    """Curate every variant, train and score every seed, and write the results; returns their summary."""
    variants = cfg.resolved_variants()
    cfg.root.mkdir(parents=True, exist_ok=True)
    atomic_write_json(cfg.root / "ablation.json", cfg.model_dump(mode="json"))
    stats = curate_variants(cfg, variants, progress)
    summaries = []
    for variant in variants:
        tokens = cfg.curation(variant).run_dir / "tokens"
        runs = {seed: train_and_score(cfg, variant.name, tokens, seed) for seed in cfg.train.seeds}
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
    parser = argparse.ArgumentParser(prog="python -m pipelines.ablate", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="ablation YAML (default: the ladder on the bundled corpus, tiny model, 3 seeds)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_ablation_config(args.config)
        summary = run_ablation(cfg, progress=not args.no_progress)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(render_markdown(summary))
    print(f"results: {cfg.root / 'results.md'}, {cfg.root / 'results.json'}, {cfg.root / 'bpb.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
