"""Mixing the curated documents in tokens and writing the token shards, on Ray.

    encode   per curated shard: every document encoded once, staged as an Arrow IPC token file
    plan     driver: per-domain repeats from the token counts (curation.mixing.plan), 16 bytes/document
    shuffle  driver: the selected (document, repeat) entries ordered by a seeded hash, cut into shards
    write    per output shard: documents gathered from the memory-mapped staging files, EOS appended
    reject   per curated shard: documents the mix left out go to rejected/mix/ with their reason

``tokens/manifest.json`` is written last and marks the phase complete; a killed attempt is redone
from the start of the phase, which gives the same bytes.
"""

from __future__ import annotations

import itertools
import json
import logging
import shutil
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curation.core.document import stable_hash
from curation.core.stats import StageStats
from curation.mixing.plan import mixture_total, plan_domain
from curation.writers.shards import read_documents, rejected_writer
from pipelines.config import WebCorpusConfig
from pipelines.inputs import Shard
from pipelines.ray_runtime import run_tasks
from pipelines.run_dir import RunDir, atomic_write_json
from tokenizer.model import Tokenizer
from tokenizer.shards import TokenShard, token_dtype, write_flat_token_shard, write_token_shard

logger = logging.getLogger(__name__)

MIX_REASON = "mix_not_selected"
ENCODE_BATCH = 256


def curated(run: RunDir, cfg: WebCorpusConfig, shard: str) -> Path:
    return run.deduped(shard) if cfg.dedup.enabled else run.filtered(shard)


def encode_shard(cfg: WebCorpusConfig, shard: str) -> dict:
    """Encode one curated shard into a staging token file; return per-document counts for the plan.

    Columns are read straight from Parquet and the token ids go into one flat array: per-document
    Python objects would cost more than sentencepiece's encoding itself.
    """
    run = RunDir(cfg.run_dir)
    tokenizer = Tokenizer(run.tokenizer_model)
    dtype = token_dtype(tokenizer.vocab_size)
    table = pq.read_table(curated(run, cfg, shard), columns=["id", "text", "domain", "metadata"])
    texts, ids, domains = table["text"].to_pylist(), table["id"].to_pylist(), table["domain"].to_pylist()
    lengths, parts = [], []
    for start in range(0, len(texts), ENCODE_BATCH):
        encoded = tokenizer.processor.encode(texts[start : start + ENCODE_BATCH], num_threads=1)
        lengths += [len(x) for x in encoded]
        parts.append(np.fromiter(itertools.chain.from_iterable(encoded), dtype=dtype))
    lengths = np.array(lengths, dtype=np.int64)
    flat = np.concatenate(parts) if parts else np.empty(0, dtype)
    write_flat_token_shard(run.root / "tokens" / "staging" / f"{shard}.arrow", flat, lengths, domains, ids)
    return {
        "shard": shard,
        "domain": domains,
        "tokens": lengths,
        "bytes": pc.binary_length(table["text"].cast(pa.binary())).to_numpy(zero_copy_only=False).astype(np.int64),
        "key": np.array([stable_hash(f"{cfg.mix.seed}:{i}") for i in ids], dtype=np.uint64),
        # documents whose domain the classifier gave (metadata is sorted JSON, so the text is fixed)
        "classified": pc.match_substring(table["metadata"], '"domain_source": "classified"').to_numpy(zero_copy_only=False),
    }


def write_output_shard(run_root: Path, name: str, entries: list[tuple[str, int]], eos: int, dtype_name: str) -> dict:
    """Gather (staging shard, row) documents in the given order, append EOS, write one shard."""
    dtype = np.dtype(dtype_name)
    staging = {s: TokenShard(run_root / "tokens" / "staging" / f"{s}.arrow") for s in sorted({s for s, _ in entries})}
    eos_arr = np.array([eos], dtype=dtype)
    docs = []
    for source, row in entries:
        shard = staging[source]
        docs.append((np.concatenate([shard.document(row), eos_arr]), shard.domains[row].as_py(), shard.doc_ids[row].as_py()))
    return write_token_shard(run_root / "tokens" / name, docs, dtype)


def reject_unmixed(cfg: WebCorpusConfig, shard: str, left_out: list[int]) -> int:
    """Documents of one curated shard that the mix did not take, with the reason, to rejected/mix/."""
    run = RunDir(cfg.run_dir)
    writer = rejected_writer(run.rejected("mix", shard))
    wanted = set(left_out)
    for row, doc in enumerate(read_documents(curated(run, cfg, shard))):
        if row in wanted:
            writer.add((doc, MIX_REASON, None), len(doc.text))
    writer.commit(keep_empty=False)
    return len(wanted)


def _cut(entries: list[tuple[str, int]], sizes: list[int], shard_tokens: int) -> list[list[tuple[str, int]]]:
    shards, current, total = [], [], 0
    for entry, size in zip(entries, sizes):
        current.append(entry)
        total += size
        if total >= shard_tokens:
            shards.append(current)
            current, total = [], 0
    if current:
        shards.append(current)
    return shards


def run_mix_and_shards(cfg: WebCorpusConfig, shards: list[Shard], progress: bool) -> tuple[StageStats, dict]:
    """Plan the mixture, write the token shards and their manifest; return the mix stage's funnel."""
    run = RunDir(cfg.run_dir)
    manifest_path = run.root / "tokens" / "manifest.json"
    stats_path = run.root / "stats" / "mix.json"
    if manifest_path.exists() and stats_path.exists():
        return StageStats.from_dict(json.loads(stats_path.read_text())), json.loads(manifest_path.read_text())
    start = time.perf_counter()
    shutil.rmtree(run.root / "tokens", ignore_errors=True)
    shutil.rmtree(run.root / "rejected" / "mix", ignore_errors=True)
    tokenizer = Tokenizer(run.tokenizer_model)
    names = [s.name for s in shards]
    encoded = run_tasks(encode_shard, [(cfg, n) for n in names], "mix: encode", progress)

    # ---- plan, per domain, over every document of the run (16 bytes each)
    by_domain: dict[str, list[tuple[int, int]]] = defaultdict(list)  # domain -> (shard index, row)
    for s, e in enumerate(encoded):
        for row, domain in enumerate(e["domain"]):
            by_domain[domain].append((s, row))
    # the plan counts each document's EOS too, so the ratios hold for the tokens the shards really hold
    available = {d: int(sum(encoded[s]["tokens"][r] + 1 for s, r in by_domain.get(d, []))) for d in cfg.mix.targets}
    empty = [d for d, n in available.items() if n == 0 and cfg.mix.targets[d] > 0]
    if empty:
        raise RuntimeError(f"mix: no curated tokens left in domain(s) {empty}; the target ratios cannot be met")
    total = mixture_total(available, cfg.mix.targets, cfg.mix.total_tokens)
    stats = StageStats("mix")
    plans, repeats_of = {}, {}
    classified = defaultdict(lambda: {"documents": 0, "tokens": 0})  # per domain, in the shards (EOS included)
    for domain, share in cfg.mix.targets.items():
        members = by_domain.get(domain, [])
        tokens = np.array([encoded[s]["tokens"][r] for s, r in members], dtype=np.int64)
        keys = np.array([encoded[s]["key"][r] for s, r in members], dtype=np.uint64)
        plan = plan_domain(domain, share, total, tokens + 1, keys)
        plans[domain] = plan
        if plan.epochs > cfg.mix.repeat_limit:
            logger.warning("mix: domain %s is repeated %.2f epochs, past mix.repeat_limit=%s", domain, plan.epochs, cfg.mix.repeat_limit)
        for (s, r), n, rep in zip(members, tokens.tolist(), plan.repeats.tolist()):
            repeats_of[(s, r)] = rep
            size = (int(encoded[s]["bytes"][r]), n)
            if rep:
                if encoded[s]["classified"][r]:
                    classified[domain]["documents"] += rep
                    classified[domain]["tokens"] += (n + 1) * rep
                stats.record_kept(domain, size, (size[0] * rep, n * rep))
                stats.domain(domain).out.docs += rep - 1  # out counts every copy that goes to the shards
            else:
                stats.record_rejected(domain, MIX_REASON, size)

    # ---- shuffle the selected copies deterministically and cut them into shards
    selected = [(s, r, k) for (s, r), rep in sorted(repeats_of.items()) for k in range(rep)]
    order = sorted(
        selected, key=lambda e: (stable_hash(f"{cfg.shards.seed}:{encoded[e[0]]['key'][e[1]]}:{e[2]}"), e[0], e[1], e[2])
    )
    groups: dict[str, list[tuple[int, int, int]]] = {"": order}
    if cfg.shards.per_domain:
        groups = defaultdict(list)
        for e in order:
            groups[encoded[e[0]]["domain"][e[1]]].append(e)
    calls = []
    dtype = token_dtype(tokenizer.vocab_size)
    for group, entries in sorted(groups.items()):
        sizes = [int(encoded[s]["tokens"][r]) + 1 for s, r, _ in entries]
        for i, cut in enumerate(_cut([(names[s], r) for s, r, _ in entries], sizes, cfg.shards.shard_tokens)):
            name = f"{group}/shard-{i:05d}.arrow" if group else f"shard-{i:05d}.arrow"
            calls.append((run.root, name, cut, tokenizer.eos_id, dtype.name))
    written = run_tasks(write_output_shard, calls, "mix: write shards", progress)
    for entry, call in zip(written, calls):
        entry["file"] = call[1]
    left_out = defaultdict(list)
    for (s, r), rep in repeats_of.items():
        if rep == 0:
            left_out[s].append(r)
    run_tasks(reject_unmixed, [(cfg, names[s], rows) for s, rows in sorted(left_out.items())], "mix: rejected", progress)
    shutil.rmtree(run.root / "tokens" / "staging")
    stats.wall_time_s = time.perf_counter() - start

    tokens_total = sum(e["tokens"] for e in written)
    per_domain = {
        d: {
            "documents": sum(e["domains"].get(d, {}).get("documents", 0) for e in written),
            "tokens": sum(e["domains"].get(d, {}).get("tokens", 0) for e in written),
        }
        for d in cfg.mix.targets
    }
    for d, entry in per_domain.items():
        p = plans[d]
        entry.update(
            target_share=p.target_share,
            achieved_share=round(entry["tokens"] / tokens_total, 6) if tokens_total else 0.0,
            available_tokens=p.available_tokens,
            epochs=round(p.epochs, 4),
            # of which the domain classifier chose the domain (untagged sources); the rest were tagged
            classified_documents=classified[d]["documents"],
            classified_tokens=classified[d]["tokens"],
        )
    manifest = {
        "format": "arrow-ipc: tokens list<%s> (EOS appended), domain string, doc_id string; one record batch" % dtype.name,
        "tokenizer": {"sha256": tokenizer.sha256, "vocab_size": tokenizer.vocab_size, "eos_id": tokenizer.eos_id, "model": "../tokenizer/spm.model",
                      "special": tokenizer.special},
        "dtype": dtype.name,
        "documents": sum(e["documents"] for e in written),
        "tokens": tokens_total,
        "domains": per_domain,
        "per_domain_shards": cfg.shards.per_domain,
        "shards": written,
    }
    atomic_write_json(stats_path, stats.to_dict())
    atomic_write_json(manifest_path, manifest)
    return stats, manifest
