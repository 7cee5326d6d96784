"""Curate a web corpus on Ray: ``python -m pipelines.web_corpus [--config run.yaml] [section.field=value ...]``.

With no arguments it curates the bundled sample corpus into ``runs/sample``. Run it again and it
resumes: finished shards are skipped and the output is the same as an uninterrupted run's.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

from curation.core.sampling import balanced_sample
from curation.core.stats import domain_assignment, retention
from curation.readers.sources import Shard, list_shards
from pipelines.config import ConfigError, WebCorpusConfig
from pipelines.config_loading import load_config
from pipelines.dedup import run_dedup
from pipelines.funnel import merge_shard_stats, render_table
from pipelines.mix import run_mix_and_shards
from pipelines.progress import record_progress
from pipelines.ray_runtime import ray_session, reset_store_retries, run_tasks, store_retries
from pipelines.run_dir import RunDir
from pipelines.stages import CURATE, DEDUP, DOMAIN_CLASSIFIER, EXTRACT, SHARD_PHASES, TOKENIZER, stage_names, stage_plan
from pipelines.tasks import curate_shard, sample_shard_for_tokenizer
from tokenizer.files import atomic_write_bytes, atomic_write_json
from tokenizer.model import Tokenizer
from tokenizer.storage import is_remote
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
            run_tasks(curate_shard, [(run, s, plan) for s in todo], CURATE.steps[0], progress, done_before=len(shards) - len(todo))
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


def write_funnel(cfg, run: RunDir, shards: list[Shard], start: float, tokenizer, dedup, mix_stats, manifest, error: str | None = None) -> dict:
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
        "counted exactly with the run's tokenizer, EOS not included",
        "shards": len(shards),
        "completed_shards": {p.name: sum(run.shard_stats(p.name, s.name).exists() for s in shards) for p in SHARD_PHASES},
        "stages": [s.to_dict() for s in stages],
        "retention": retention(stages, EXTRACT, manifest.tokens if manifest else None).to_dict(),
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
