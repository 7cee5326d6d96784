"""Near-dedup benchmark: accuracy against exact Jaccard, signature speed, and the whole dedup.

    python -m benchmarks.dedup [--docs 20000] [--skip-datatrove]

1. Accuracy: pairs made from real pages of the bundled corpus by replacing a fraction of their
   words, with their exact Jaccard similarity computed from the shingle sets; a pair is called a
   duplicate when the pipeline's own test says so (shared LSH band, then signature agreement).
   Precision and recall are for J >= 0.8 (duplicates) versus J <= 0.6 (not).
2. Signatures per second on one core, on ~1 KB documents: ours (tokenising included) against
   datasketch's per-shingle ``update`` loop, ``update_batch`` and ``MinHash.bulk``, both given
   ready-made shingles (not charged for tokenising) and starting from the text (str.split shingles).
3. The whole dedup (signatures, LSH, clustering, writing kept and removed documents) against
   datatrove's four-step MinHash pipeline on the same documents and the same cores.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import corpus_texts, machine, versions
from curation.dedup.components import signature_agreement
from curation.dedup.minhash import MinHasher, band_keys, lsh_bands, shingles


def jaccard(a: str, b: str) -> float:
    x, y = set(shingles(a, 5)), set(shingles(b, 5))
    return len(x & y) / len(x | y) if x | y else 1.0


def mutate(text: str, rate: float, vocabulary: list[str], rng: random.Random) -> str:
    words = text.split()
    for i in range(len(words)):
        if rng.random() < rate:
            words[i] = rng.choice(vocabulary)
    return " ".join(words)


def make_pairs(texts: list[str], rng: random.Random) -> list[tuple[str, str, float]]:
    vocabulary = [w for t in texts[:200] for w in t.split()]
    rates = [0.003, 0.006, 0.01, 0.015, 0.02, 0.03, 0.04, 0.06, 0.08, 0.12]
    pairs = []
    for text in texts:
        for rate in rng.sample(rates, 4):
            variant = mutate(text, rate, vocabulary, rng)
            pairs.append((text, variant, jaccard(text, variant)))
    return pairs


def accuracy(pairs, threshold: float, verify: bool, candidate_threshold: float, margin: float = 0.0) -> dict:
    hasher = MinHasher()
    bands, rows = lsh_bands(candidate_threshold, 128)
    a = hasher.signatures([p[0] for p in pairs])
    b = hasher.signatures([p[1] for p in pairs])
    candidate = (band_keys(a, bands, rows) == band_keys(b, bands, rows)).any(axis=1)
    called = candidate & (signature_agreement(a, b) >= threshold - margin) if verify else candidate
    j = np.array([p[2] for p in pairs])
    pos, neg = j >= 0.8, j <= 0.6
    tp, fp = int((called & pos).sum()), int((called & neg).sum())
    bins = {f"{lo:.2f}-{hi:.2f}": float(called[(j >= lo) & (j < hi)].mean()) if ((j >= lo) & (j < hi)).any() else None
            for lo, hi in [(0.0, 0.6), (0.6, 0.7), (0.7, 0.8), (0.8, 0.85), (0.85, 0.9), (0.9, 1.01)]}
    return {
        "bands x rows": f"{bands} x {rows}",
        "precision": tp / max(1, tp + fp),
        "recall": tp / max(1, int(pos.sum())),
        "positives": int(pos.sum()),
        "negatives": int(neg.sum()),
        "called duplicate, by J": bins,
    }


def one_kb(texts: list[str], n: int) -> list[str]:
    docs = []
    for t in texts:
        if len(t) >= 1000:
            docs.append(t[: t.rfind(" ", 0, 1000)])
    return (docs * (n // max(1, len(docs)) + 1))[:n]


def split_shingles(text: str, n: int = 5) -> list[bytes]:
    """The cheapest shingling a datasketch user would write: str.split word n-grams."""
    w = text.lower().split()
    return [" ".join(w[i : i + n]).encode() for i in range(max(1, len(w) - n + 1))]


def _rate(n: int, fn) -> float:
    start = time.perf_counter()
    fn()
    return n / (time.perf_counter() - start)


def throughput(texts: list[str]) -> tuple[float, list[tuple[str, float, float]]]:
    """Ours (text to signature), and per baseline (hashing given shingles, text to signature)."""
    from datasketch import MinHash

    docs = one_kb(texts, 4000)
    hasher = MinHasher()
    hasher.signatures(docs[:10])  # build the permutations outside the timing
    ours = _rate(len(docs), lambda: [hasher.signatures(docs[i : i + 512]) for i in range(0, len(docs), 512)])

    def loop(items, shingle):
        for item in items:
            m = MinHash(num_perm=128)
            for s in shingle(item):
                m.update(s)

    def batch(items, shingle):
        for item in items:
            MinHash(num_perm=128).update_batch(shingle(item))

    def bulk(items, shingle):
        MinHash.bulk([shingle(item) for item in items], num_perm=128)

    ready = [split_shingles(d) for d in docs]
    rows = []
    for label, fn, n in [("datasketch update loop", loop, 300), ("datasketch update_batch", batch, 1000), ("datasketch MinHash.bulk", bulk, 4000)]:
        given = _rate(n, lambda: fn(ready[:n], lambda x: x))
        from_text = _rate(n, lambda: fn(docs[:n], split_shingles))
        rows.append((label, given, from_text))
    return ours, rows


def scaled_corpus(texts: list[str], n: int, seed: int = 0) -> list[str]:
    """n documents: the real pages, then edited copies (exact, near and far) of them."""
    rng = random.Random(seed)
    vocabulary = [w for t in texts[:200] for w in t.split()]
    out = list(texts[:n])
    while len(out) < n:
        base = texts[rng.randrange(len(texts))]
        roll = rng.random()
        rate = 0.0 if roll < 0.1 else 0.01 if roll < 0.4 else 0.5
        out.append(mutate(base, rate, vocabulary, rng))
    return out


def run_ours(docs: list[str], workdir: Path, cpus: int) -> tuple[float, float, int]:
    import ray

    from curation.core.document import new_document
    from curation.readers import InputFile
    from curation.readers.sources import Shard
    from curation.writers.shards import document_writer
    from pipelines.config import WebCorpusConfig
    from pipelines.dedup import run_dedup
    from pipelines.run_dir import RunDir
    from tokenizer.train import SentencePieceSettings, train_sentencepiece

    cfg = WebCorpusConfig(runs_dir=str(workdir), run_name="ours")
    run = RunDir(cfg.run_dir)
    shards = []
    per = (len(docs) + 3) // 4
    for s in range(4):
        name = f"bench-{s:05d}"
        writer = document_writer(run.filtered(name))
        for i, text in enumerate(docs[s * per : (s + 1) * per]):
            writer.add(new_document(text, f"bench/{s}#{i}", "bench", "general", None))
        writer.commit()
        shards.append(Shard(name, InputFile(name, "bench", "general", "jsonl")))
    run.tokenizer_model.parent.mkdir(parents=True, exist_ok=True)
    run.tokenizer_model.write_bytes(train_sentencepiece(docs[:500], SentencePieceSettings(vocab_size=2000)))
    start = time.perf_counter()
    ray.init(num_cpus=cpus, include_dashboard=False, logging_level="ERROR")
    ray_start = time.perf_counter() - start
    start = time.perf_counter()
    summary = run_dedup(cfg, shards, progress=False)
    took = time.perf_counter() - start
    ray.shutdown()
    return took, ray_start, summary["removed"]


def run_datatrove(docs: list[str], workdir: Path, cpus: int) -> tuple[float, int]:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter
    from datatrove.utils.hashing import HashConfig

    data = workdir / "input"
    data.mkdir(parents=True)
    per = (len(docs) + 3) // 4
    for s in range(4):
        with gzip.open(data / f"{s:05d}.jsonl.gz", "wt") as f:
            for i, text in enumerate(docs[s * per : (s + 1) * per]):
                f.write(json.dumps({"id": f"bench/{s}#{i}", "text": text}) + "\n")
    bands, rows = lsh_bands(0.65, 128)  # the same LSH geometry as ours by default
    config = MinhashConfig(n_grams=5, num_buckets=bands, hashes_per_bucket=rows, hash_config=HashConfig(precision=32))
    out = workdir / "dt"
    common = dict(workers=cpus, logging_dir=str(workdir / "logs"), skip_completed=False)
    start = time.perf_counter()
    LocalPipelineExecutor([JsonlReader(str(data)), MinhashDedupSignature(output_folder=str(out / "sigs"), config=config)], tasks=4, **common).run()
    LocalPipelineExecutor([MinhashDedupBuckets(input_folder=str(out / "sigs"), output_folder=str(out / "buckets"), config=config)], tasks=bands, **common).run()
    LocalPipelineExecutor([MinhashDedupCluster(input_folder=str(out / "buckets"), output_folder=str(out / "remove"), config=config)], tasks=1, **{**common, "workers": 1}).run()
    LocalPipelineExecutor(
        [JsonlReader(str(data)), MinhashDedupFilter(input_folder=str(out / "remove"), exclusion_writer=JsonlWriter(str(out / "removed"))), JsonlWriter(str(out / "kept"))],
        tasks=4,
        **common,
    ).run()
    took = time.perf_counter() - start
    removed = 0
    for path in (out / "removed").glob("*.jsonl.gz"):
        with gzip.open(path, "rt") as f:
            removed += sum(1 for _ in f)
    return took, removed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=20000, help="documents in the whole-dedup comparison")
    parser.add_argument("--cpus", type=int, default=os.cpu_count())
    parser.add_argument("--skip-datatrove", action="store_true")
    args = parser.parse_args()
    from loguru import logger as loguru_logger  # datatrove's per-task stats would bury the tables

    loguru_logger.remove()
    loguru_logger.add(lambda m: None, level="ERROR")
    print(f"machine: {machine()}")
    print(f"versions: {versions('datasketch', 'datatrove', 'numpy', 'ray')}")
    texts = corpus_texts(min_words=100)
    print(f"real text: {len(texts)} pages of the bundled corpus with >= 100 words\n")

    pairs = make_pairs(texts, random.Random(0))
    print(f"1. accuracy on {len(pairs)} pairs (page, edited page) with exact Jaccard of word 5-gram sets")
    print(f"{'configuration':<42}{'bands x rows':>13}{'precision':>11}{'recall':>9}   called duplicate, by exact J")
    from curation.dedup.params import DedupConfig

    default = DedupConfig()
    for label, threshold, verify, cand, margin in [
        (f"default: 0.8, verified at >= {0.8 - default.verify_margin:.3f}", 0.8, True, default.candidate_threshold, default.verify_margin),
        ("0.8, verified with no margin", 0.8, True, 0.65, 0.0),
        ("LSH alone at 0.8 (datasketch's choice)", 0.8, False, 0.8, 0.0),
        ("threshold 0.7, verified, no margin", 0.7, True, 0.55, 0.0),
    ]:
        r = accuracy(pairs, threshold, verify, cand, margin)
        bins = "  ".join(f"{k}: {v:.2f}" for k, v in r["called duplicate, by J"].items() if v is not None)
        print(f"{label:<42}{r['bands x rows']:>13}{r['precision']:>11.3f}{r['recall']:>9.3f}   {bins}")
    print(f"(positives J >= 0.8: {r['positives']}, negatives J <= 0.6: {r['negatives']})\n")

    print("2. MinHash signatures, 128 permutations, ~1 KB documents, one core (datasketch's default sha1 hash)")
    ours, rows = throughput(texts)
    print(f"ours, text to signature (tokenising included): {ours:.0f} docs/s")
    print(f"{'baseline':<28}{'shingles given':>16}{'ours is':>9}{'from text':>12}{'ours is':>9}")
    for label, given, from_text in rows:
        print(f"{label:<28}{given:>12.0f}/s{ours / given:>8.1f}x{from_text:>10.0f}/s{ours / from_text:>8.1f}x")
    print()

    docs = scaled_corpus(texts, args.docs)
    print(f"3. whole dedup of {len(docs)} documents ({sum(map(len, docs)) / 1e6:.1f} MB; the real pages and edited copies) on {args.cpus} cores")
    with tempfile.TemporaryDirectory() as tmp:
        took, ray_start, removed = run_ours(docs, Path(tmp) / "ours", args.cpus)
        print(f"{'ours (Ray; starting Ray took %.1f s more)' % ray_start:<44}{took:>8.1f} s   removed {removed}")
        if not args.skip_datatrove:
            dt_took, dt_removed = run_datatrove(docs, Path(tmp) / "datatrove", args.cpus)
            print(f"{'datatrove MinHash (4 local steps)':<44}{dt_took:>8.1f} s   removed {dt_removed}")
            print(f"ours is {dt_took / took:.1f}x datatrove's speed (ours also counts tokens and writes every removed document with its survivor)")
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
