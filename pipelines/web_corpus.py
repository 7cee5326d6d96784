"""Curate a web corpus on Ray: ``python -m pipelines.web_corpus [--config run.yaml] [section.field=value ...]``.

With no arguments it curates the bundled sample corpus into ``runs/sample``. Run it again and it
resumes: finished shards are skipped and the output is the same as an uninterrupted run's.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from curation.core.sampling import balanced_sample
from curation.readers.sources import Shard, list_shards
from pipelines.config import ConfigError, WebCorpusConfig
from pipelines.config_loading import load_config
from pipelines.dedup import run_dedup
from pipelines.funnel import render_table, write_funnel
from pipelines.mix import run_mix_and_shards
from pipelines.progress import record_progress
from pipelines.ray_runtime import ray_session, reset_store_retries, run_tasks
from pipelines.run_dir import RunDir
from pipelines.stages import CURATE, TOKENIZER, stage_plan
from pipelines.tasks import curate_shard, sample_shard_for_tokenizer
from tokenizer.files import atomic_write_bytes, atomic_write_json
from tokenizer.model import Tokenizer
from tokenizer.train import SentencePieceSettings, model_sha256, train_sentencepiece

logger = logging.getLogger("pipelines.web_corpus")


def ensure_tokenizer(cfg: WebCorpusConfig, run: RunDir, shards: list[Shard], progress: bool) -> Tokenizer:
    """The run's tokenizer: given by path, already trained by an earlier attempt, or trained now."""
    # the record is written after the model: a run killed between the two has no record, and
    # training again (deterministic: the same model bytes) is what writes it
    if run.tokenizer_model.exists() and run.tokenizer_info.exists():
        return Tokenizer(run.tokenizer_model)
    tok = cfg.tokenizer
    if tok.model_path:
        model = Tokenizer(tok.model_path).path.read_bytes()
        info = {"trained": False, "given_path": tok.model_path}
    else:
        per_shard = max(1, tok.sample_chars // len(shards))
        calls = [(run, s, stage_plan(cfg), tok.sample_rate, per_shard) for s in shards]
        results = run_tasks(sample_shard_for_tokenizer, calls, TOKENIZER.steps[0], progress)
        texts, chars = balanced_sample([x for r in results for x in r], tok.sample_chars)
        settings = SentencePieceSettings(tok.vocab_size, tok.model_type, tok.character_coverage, tok.byte_fallback)
        model = train_sentencepiece(texts, settings)
        info = {"trained": True, "sample_docs": len(texts), "sample_chars_per_domain": chars}
    info["sha256"] = model_sha256(model)
    atomic_write_bytes(run.tokenizer_model, model)
    tokenizer = Tokenizer(run.tokenizer_model)
    info.update(vocab_size=tokenizer.vocab_size, eos_id=tokenizer.eos_id, special=tokenizer.special)
    atomic_write_json(run.tokenizer_info, info)
    return tokenizer


def run_web_corpus(cfg: WebCorpusConfig, overwrite: bool = False, progress: bool = True) -> dict:
    """Run (or resume) a curation run and return its funnel, also written to ``stats.json``.

    A run that fails still writes ``stats.json``, with ``status: failed``, the error, and the
    funnel of the shards it completed.
    """
    start = time.perf_counter()
    reset_store_retries()
    run = RunDir(cfg.run_dir)
    shards = list_shards(cfg.sources, cfg.read, cfg.data_roots)
    if cfg.dedup.enabled:
        cfg.dedup.previous_index_files()  # a bad earlier index fails the run now, not after curation
    run.prepare(cfg, overwrite=overwrite)
    done: dict = {"tokenizer": None, "dedup": None, "mix_stats": None, "manifest": None}
    try:
        with ray_session(cfg.ray), record_progress(run.progress):
            done["tokenizer"] = ensure_tokenizer(cfg, run, shards, progress)
            todo = [s for s in shards if not run.shard_stats(CURATE.name, s.name).exists()]
            if len(todo) < len(shards):
                logger.info("resuming: %d of %d shards already complete", len(shards) - len(todo), len(shards))
            plan = stage_plan(cfg)
            run_tasks(curate_shard, [(run, s, plan, cfg.read.count_html_tokens) for s in todo], CURATE.steps[0], progress, done_before=len(shards) - len(todo))
            if cfg.dedup.enabled:
                done["dedup"] = run_dedup(cfg, shards, progress)
            if cfg.shards.enabled:
                done["mix_stats"], done["manifest"] = run_mix_and_shards(cfg, shards, progress)
    except Exception as exc:
        write_funnel(cfg, run, shards, start, **done, error=f"{type(exc).__name__}: {exc}")
        raise
    stats = write_funnel(cfg, run, shards, start, **done)
    if stats["invariant_violations"]:
        raise RuntimeError(f"funnel does not balance: {stats['invariant_violations']}")
    return stats


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Overrides may come anywhere among the options (``--config x a.b=1 --overwrite c.d=2``)."""
    parser = argparse.ArgumentParser(prog="python -m pipelines.web_corpus", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="YAML run config (default: the bundled sample corpus)")
    parser.add_argument("--overwrite", action="store_true", help="delete an existing run directory first")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("overrides", nargs="*", metavar="section.field=value", help="config overrides, e.g. language.threshold=0.8")
    return parser.parse_intermixed_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(args.config, args.overrides)
        stats = run_web_corpus(cfg, overwrite=args.overwrite, progress=not args.no_progress)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(render_table(stats))
    print(f"\nfunnel: {RunDir(cfg.run_dir).stats}   wall time: {stats['wall_time_s']:.1f} s on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
