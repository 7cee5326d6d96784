"""datatrove's own pipeline equivalent to ours, as ``benchmarks.pipeline`` runs it (in a process of its own).

    python -m benchmarks.datatrove_pipeline --config CURATION.yaml --work DIR [--workers N]

FineWeb's recipe, built from datatrove's blocks with the values of our run config: ``WarcReader`` ->
``URLFilter`` -> ``Trafilatura`` -> ``LanguageFilter`` -> Gopher repetition / Gopher quality / C4 /
FineWeb filters -> ``JsonlWriter``; then its four-step MinHash dedup (signatures, buckets, cluster,
filter) with our LSH geometry; then a Hugging Face ``tokenizers`` BPE trained here on the deduped
text (the same vocabulary size and character budget as our sentencepiece model; datatrove has no
trainer of its own and nothing may be downloaded) and ``DocumentTokenizer``. Every step runs on
``LocalPipelineExecutor`` with one task per input file (buckets: one per band) and ``workers``
processes. Two datatrove defaults are changed to match ours: the extractor's cross-document
deduplication is off (its output would depend on which pages came first) and its timeout is ours.
Our URL filter and language model are datatrove's ``URLFilter`` and ``LanguageFilter`` configured
offline (``curation.filters.url_filter``, ``curation.filters.language``), so both sides use the same lists and model.

Writes ``<work>/summary.json``: wall time per step and datatrove's merged stats per step.
"""

from __future__ import annotations

import argparse
import glob
import gzip
import json
import os
import time
from pathlib import Path


def _filter_steps(cfg, files_dir: str, out: Path) -> list:
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.filters import C4QualityFilter, FineWebQualityFilter, GopherQualityFilter, GopherRepetitionFilter, URLFilter
    from datatrove.pipeline.readers import WarcReader
    from datatrove.pipeline.writers import JsonlWriter

    from curation.filters.language import LanguageID
    from curation.filters.url_filter import URLFilterStage

    q = cfg.quality
    params = {name: getattr(q, name).model_dump(exclude={"enabled"}) for name in ("gopher_repetition", "gopher_quality", "c4_quality", "fineweb_quality")}
    return [
        WarcReader(files_dir, glob_pattern="*.warc.gz"),
        URLFilterStage(**cfg.url_filter.model_dump(exclude={"enabled"}), filter_class=URLFilter).filter,
        Trafilatura(favour_precision=cfg.extract.favour_precision, timeout=cfg.extract.timeout_s, deduplicate=False),
        LanguageID(cfg.language.languages, cfg.language.threshold).filter,
        GopherRepetitionFilter(**params["gopher_repetition"]),
        GopherQualityFilter(**params["gopher_quality"]),
        C4QualityFilter(**params["c4_quality"]),
        FineWebQualityFilter(**params["fineweb_quality"]),
        JsonlWriter(str(out / "filtered")),
    ]


def _train_tokenizer(deduped: Path, path: Path, vocab_size: int, budget_chars: int) -> int:
    """A byte-fallback BPE like our sentencepiece model, on at most ``budget_chars`` of deduped text."""
    from tokenizers import SentencePieceBPETokenizer

    texts, chars = [], 0
    for file in sorted(deduped.glob("*.jsonl.gz")):
        with gzip.open(file, "rt") as f:
            for line in f:
                text = json.loads(line)["text"]
                texts.append(text)
                chars += len(text)
                if chars >= budget_chars:
                    break
        if chars >= budget_chars:
            break
    tokenizer = SentencePieceBPETokenizer()
    tokenizer.train_from_iterator(texts, vocab_size=vocab_size, special_tokens=["<unk>", "</s>"], show_progress=False)
    tokenizer.save(str(path))
    return len(texts)


def run(config_path: str, work: Path, workers: int) -> dict:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter, MinhashDedupSignature
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.tokens import DocumentTokenizer
    from datatrove.pipeline.writers import JsonlWriter
    from datatrove.utils.hashing import HashConfig

    from pipelines.config_loading import load_config

    cfg = load_config(config_path, [])
    files = sorted({p for s in cfg.sources for pattern in s.paths for p in glob.glob(pattern)})
    folders = {str(Path(p).parent) for p in files}
    if len(folders) != 1:
        raise SystemExit(f"expected every WARC of the config in one folder, got {sorted(folders)}")
    files_dir, tasks = folders.pop(), len(files)
    dd = cfg.dedup
    minhash = MinhashConfig(n_grams=dd.ngram, num_buckets=dd.bands, hashes_per_bucket=dd.rows, seed=dd.seed, hash_config=HashConfig(precision=64))
    out = work / "output"
    steps = {
        "filter": ([*_filter_steps(cfg, files_dir, out)], tasks, workers),
        "minhash_signature": ([JsonlReader(str(out / "filtered")), MinhashDedupSignature(output_folder=str(out / "sigs"), config=minhash)], tasks, workers),
        "minhash_buckets": ([MinhashDedupBuckets(input_folder=str(out / "sigs"), output_folder=str(out / "buckets"), config=minhash)], dd.bands, workers),
        "minhash_cluster": ([MinhashDedupCluster(input_folder=str(out / "buckets"), output_folder=str(out / "remove"), config=minhash)], 1, 1),
        "minhash_filter": (
            [JsonlReader(str(out / "filtered")), MinhashDedupFilter(input_folder=str(out / "remove")), JsonlWriter(str(out / "deduped"))],
            tasks,
            workers,
        ),
    }
    summary: dict = {"tasks": tasks, "workers": workers, "steps": {}}
    for name, (pipeline, n_tasks, n_workers) in steps.items():
        start = time.perf_counter()
        stats = LocalPipelineExecutor(pipeline, tasks=n_tasks, workers=n_workers, logging_dir=str(work / "logs" / name), skip_completed=False).run()
        summary["steps"][name] = {"wall_s": time.perf_counter() - start, "stats": json.loads(stats.to_json())}
    start = time.perf_counter()
    tokenizer_path = work / "tokenizer.json"
    sample_docs = _train_tokenizer(out / "deduped", tokenizer_path, cfg.tokenizer.vocab_size, cfg.tokenizer.sample_chars)
    summary["steps"]["tokenizer_train"] = {"wall_s": time.perf_counter() - start, "sample_docs": sample_docs}
    start = time.perf_counter()
    tokenize = [JsonlReader(str(out / "deduped")), DocumentTokenizer(str(out / "tokens"), tokenizer_name_or_path=str(tokenizer_path), eos_token="</s>")]
    stats = LocalPipelineExecutor(tokenize, tasks=tasks, workers=workers, logging_dir=str(work / "logs" / "tokenize"), skip_completed=False).run()
    summary["steps"]["tokenize"] = {"wall_s": time.perf_counter() - start, "stats": json.loads(stats.to_json())}
    (work / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    args = parser.parse_args()
    from loguru import logger as loguru_logger  # one INFO line per task and file would bury the output

    loguru_logger.remove()
    loguru_logger.add(lambda m: None, level="ERROR")
    run(args.config, args.work, args.workers)


if __name__ == "__main__":
    main()
