"""The scale benchmark's code path on a tiny slice (two bundled WARC shards, no download), and the
scale corpus builder's WARC writing: deterministic bytes that both our reader and datatrove's read
record for record. No wall-clock figure is asserted."""

from __future__ import annotations

import gzip
import importlib.util
import json
import sys

import pytest

from tests.conftest import CORPUS, ROOT


def _builder():
    spec = importlib.util.spec_from_file_location("build_scale_corpus", ROOT / "scripts" / "build_scale_corpus.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_scale_corpus_shards_are_deterministic_and_datatrove_reads_every_record(tmp_path):
    from datatrove.pipeline.readers import WarcReader

    from curation.readers import InputFile, read_file

    build = _builder()
    pages = []
    with gzip.open(CORPUS / "jsonl" / "general.jsonl.gz", "rt") as f:
        for i, line in enumerate(f):
            if i == 40:
                break
            path = tmp_path / "html" / f"{i}.html"
            path.parent.mkdir(exist_ok=True)
            path.write_text(json.loads(line)["html"])
            url = f"https://docs.example.org/{i}.html"
            pages.append(build.Page(build.hashlib.sha256(url.encode()).hexdigest(), url, str(path), path.stat().st_size, "general"))
    pages.sort(key=lambda p: p.key)
    first, second = tmp_path / "a" / "general-00000.warc.gz", tmp_path / "b" / "general-00000.warc.gz"
    first.parent.mkdir(), second.parent.mkdir()
    entry = build.write_shard(first, pages)
    assert entry == build.write_shard(second, pages) and first.read_bytes() == second.read_bytes()
    assert entry["records"] == 40 and entry["sha256"] == build.sha256_file(first)
    ours = list(read_file(InputFile(str(first), "s", "general", "warc")))
    theirs = list(WarcReader(str(first.parent), glob_pattern="*.warc.gz").run())
    assert len(ours) == len(theirs) == 40
    assert [d.metadata["url"] for d in ours] == [d.metadata["url"] for d in theirs] == [p.url for p in pages]


@pytest.mark.slow
def test_the_benchmark_runs_both_pipelines_on_a_tiny_slice(tmp_path):
    from benchmarks.pipeline import main, mini_corpus

    corpus = mini_corpus(tmp_path / "corpus", [CORPUS / "warc" / "finance-00000.warc.gz", CORPUS / "warc" / "general-00000.warc.gz"])
    results = tmp_path / "results"
    argv = ["--corpus-dir", str(corpus), "--results-dir", str(results), "--fast-path", "--f1-pages", "20", "--cores", "2", "--worker-max-tasks", "2"]
    assert main(argv) == 0
    result = json.loads((results / "pipeline-corpus-2core.json").read_text())
    text = (results / "pipeline-corpus-2core.txt").read_text()
    records = result["corpus"]["records"]
    assert result["ours"]["records"] == result["ours_fast"]["records"] == result["datatrove"]["records"] == records > 0
    # the same blocks with the same values: the same documents survive the FineWeb filter
    assert result["ours"]["kept_after_fineweb_urls"] == result["datatrove"]["kept_after_fineweb_urls"]
    assert 0 < result["agreement"]["mean_word_f1"] <= 1 and result["agreement"]["pages_compared"] > 0
    for side in ("ours", "ours_fast", "datatrove"):
        peak = result[side]["process"]["peak_rss"]
        assert 0 < peak["driver"] <= peak["tree"]
    assert "machine:" in text and "ratio ours/datatrove" in text
    # what the exact token counts cost is reported, and the worker bound reached our runs
    assert result["ours"]["token_count_time_s"] > 0 and "token counting" in text
    assert result["ours_overrides"] == ["ray.worker_max_tasks=2"] and "ours ran with: ray.worker_max_tasks=2" in text


def test_the_scaling_table_splits_each_runs_cpu_into_per_document_work_and_the_rest(tmp_path):
    """On the recorded 0.1 / 0.3 / 1 GB results: a run's CPU per document falls with size while each
    document's work does not, so the table gives that work per record and the rest in seconds."""
    import shutil

    from benchmarks.pipeline_report import scaling

    recorded = {p: json.loads(p.read_text()) for p in (ROOT / "benchmarks" / "results").glob("pipeline-*-2core.json")}
    results = [r for r in recorded.values() if r.get("size") in ("0.1", "0.3", "1")]
    assert len(results) == 3
    for path in recorded:
        shutil.copy(path, tmp_path / path.name)
    text = scaling(tmp_path, 2)
    work_table = text.split("per-document work:")[1].splitlines()[2:]
    assert [row.split()[0] for row in work_table] == ["0.1", "0.3", "1"]
    results.sort(key=lambda r: float(r["size"]))
    first = {}
    for row, r in zip(work_table, results):
        cells = row.split()[1:]
        for i, side in enumerate(("ours", "ours_fast", "datatrove")):
            work_s = sum(r[side]["stage_time_s"].values()) + r[side].get("token_count_time_s", 0.0)
            ms = 1000 * work_s / r["corpus"]["records"]
            first.setdefault(side, ms)
            assert float(cells[3 * i]) == pytest.approx(ms, abs=0.006)
            assert float(cells[3 * i + 1]) == pytest.approx(ms / first[side], abs=0.006)
            assert float(cells[3 * i + 2]) == pytest.approx(r[side]["process"]["cpu_s"] - work_s, abs=0.6)
    assert (tmp_path / "pipeline-scaling-2core.png").stat().st_size > 0
