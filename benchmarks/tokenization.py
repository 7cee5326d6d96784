"""Tokenization benchmark: our sharded encoding on Ray against sentencepiece's own batched,
multi-threaded encode of the same text, and against datatrove's ``DocumentTokenizer``.

    python -m benchmarks.tokenization [--mb 20]

All three get the same documents (the curated text of the bundled corpus, repeated up to --mb)
and the same cores. Ours and sentencepiece use the same model (BPE, 8,192 pieces, trained here on
that text); datatrove's tokenizer needs a Hugging Face ``tokenizers`` model, so it gets an
equivalent one: a byte-level BPE with the same vocabulary size trained on the same text.
Ours reads the curated Parquet shards and writes Arrow token shards; sentencepiece only encodes
an in-memory list; datatrove reads JSONL and writes its own token files.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import tempfile
import time
from pathlib import Path

from benchmarks.common import corpus_texts, machine, versions


def documents(mb: float) -> list[str]:
    texts = corpus_texts(min_words=50)
    out, size = [], 0
    while size < mb * 1e6:
        for t in texts:
            out.append(t)
            size += len(t.encode())
            if size >= mb * 1e6:
                break
    return out


def run_ours(docs: list[str], model: bytes, work: Path, cpus: int) -> tuple[float, int]:
    import ray

    from curation.core.document import new_document
    from curation.mixing.selection import encode_shard
    from curation.writers.shards import document_writer
    from pipelines.config import WebCorpusConfig
    from pipelines.ray_runtime import run_tasks
    from pipelines.run_dir import RunDir

    cfg = WebCorpusConfig(runs_dir=str(work), run_name="ours")
    run = RunDir(cfg.run_dir)
    run.tokenizer_model.parent.mkdir(parents=True, exist_ok=True)
    run.tokenizer_model.write_bytes(model)
    n_shards = cpus * 4
    names = []
    for s in range(n_shards):
        name = f"bench-{s:05d}"
        writer = document_writer(run.deduped(name))
        for i, text in enumerate(docs[s::n_shards]):
            writer.add(new_document(text, f"bench/{s}#{i}", "bench", "general", None))
        writer.commit()
        names.append(name)
    ray.init(num_cpus=cpus, include_dashboard=False, logging_level="ERROR")
    calls = [(run.tokenizer_model, run.deduped(n), run.staged_tokens(n), cfg.mix.seed) for n in names]
    run_tasks(encode_shard, calls[:cpus], "warm-up", progress=False)  # start every worker
    start = time.perf_counter()
    results = run_tasks(encode_shard, calls, "encode", progress=False)
    took = time.perf_counter() - start
    ray.shutdown()
    return took, int(sum(r.tokens.sum() for r in results))


def run_sentencepiece(docs: list[str], model_path: Path, cpus: int) -> tuple[float, int]:
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(model_path))
    start = time.perf_counter()
    ids = sp.encode(docs, num_threads=cpus)
    return time.perf_counter() - start, sum(len(x) for x in ids)


def run_datatrove(docs: list[str], work: Path, cpus: int) -> tuple[float, int]:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.tokens import DocumentTokenizer
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    hf = Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    hf.train_from_iterator(docs[:2000], trainers.BpeTrainer(vocab_size=8192, special_tokens=["<eos>"], show_progress=False))
    tok_path = work / "tokenizer.json"
    hf.save(str(tok_path))
    data = work / "input"
    data.mkdir(parents=True)
    for s in range(cpus * 4):
        with gzip.open(data / f"{s:05d}.jsonl.gz", "wt") as f:
            for i, text in enumerate(docs[s :: cpus * 4]):
                f.write(json.dumps({"id": f"{s}-{i}", "text": text}) + "\n")
    start = time.perf_counter()
    LocalPipelineExecutor(
        [JsonlReader(str(data)), DocumentTokenizer(str(work / "out"), tokenizer_name_or_path=str(tok_path), eos_token="<eos>", shuffle_documents=False)],
        tasks=cpus * 4,
        workers=cpus,
        logging_dir=str(work / "logs"),
    ).run()
    took = time.perf_counter() - start
    tokens = sum(p.stat().st_size for p in (work / "out").glob("*.ds")) // 2
    return took, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=20)
    parser.add_argument("--cpus", type=int, default=os.cpu_count())
    args = parser.parse_args()
    from loguru import logger as loguru_logger

    loguru_logger.remove()
    print(f"machine: {machine()}")
    print(f"versions: {versions('sentencepiece', 'tokenizers', 'datatrove', 'ray')}")
    from tokenizer.train import SentencePieceSettings, train_sentencepiece

    docs = documents(args.mb)
    print(f"text: {len(docs)} documents, {sum(len(d.encode()) for d in docs) / 1e6:.1f} MB (real pages of the bundled corpus, repeated), {args.cpus} cores\n")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = train_sentencepiece(docs[:2000], SentencePieceSettings(vocab_size=8192))
        (tmp / "spm.model").write_bytes(model)
        rows = [
            ("sentencepiece encode(list, num_threads)", *run_sentencepiece(docs, tmp / "spm.model", args.cpus)),
            ("ours: Parquet -> Arrow token shards on Ray", *run_ours(docs, model, tmp / "ours", args.cpus)),
        ]
        (tmp / "dt").mkdir()
        rows.append(("datatrove DocumentTokenizer (HF BPE 8192)", *run_datatrove(docs, tmp / "dt", args.cpus)))
    base = rows[0][2] / rows[0][1]
    print(f"{'method':<46}{'seconds':>9}{'tokens':>12}{'tokens/s':>12}{'vs sentencepiece':>18}")
    for label, took, tokens in rows:
        print(f"{label:<46}{took:>9.2f}{tokens:>12}{tokens / took:>12.0f}{tokens / took / base:>17.2f}x")


if __name__ == "__main__":
    main()
