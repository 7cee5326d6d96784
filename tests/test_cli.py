"""``python -m pipelines.web_corpus`` as a user runs it."""

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from tests.conftest import ROOT


def _run(args, cwd, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "pipelines.web_corpus", "--no-progress", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**__import__("os").environ, "PYTHONPATH": str(ROOT)},
    )


def test_overrides_may_come_before_and_after_options():
    from pipelines.web_corpus import parse_args

    args = parse_args(["language.threshold=0.8", "--config", "run.yaml", "dedup.threshold=0.7", "--overwrite", "mix.seed=2"])
    assert (args.config, args.overwrite) == ("run.yaml", True)
    assert args.overrides == ["language.threshold=0.8", "dedup.threshold=0.7", "mix.seed=2"]


def test_a_bad_override_exits_2_naming_the_field(tmp_path):
    result = _run(["language.threshold=high"], tmp_path)
    assert result.returncode == 2
    assert "language.threshold" in result.stderr and "Traceback" not in result.stderr


def test_a_missing_config_file_is_a_clear_error(tmp_path):
    result = _run(["--config", str(tmp_path / "nope.yaml")], tmp_path)
    assert result.returncode == 2 and "cannot read config file" in result.stderr


@pytest.mark.slow
def test_no_arguments_curates_the_bundled_corpus(bundled_run, corpus_manifest):
    run_dir, result = bundled_run
    assert result.returncode == 0, result.stderr[-3000:]
    assert "retention:" in result.stdout
    stats = json.loads((run_dir / "stats.json").read_text())
    assert stats["invariant_violations"] == []
    read = stats["stages"][0]["total"]
    html_pages = sum(1 for p in corpus_manifest["pages"] if "iana" not in p["file"])
    assert read["in"]["docs"] >= html_pages  # every page of the shards, plus the crawl's records
    assert set(stats["retention"]["per_domain"]) == {"finance", "general", "untagged"}
    # the untagged shards and the crawl: every page that reaches the classifier gets a domain
    assignment = stats["domain_assignment"]["per_domain"]
    assert assignment["finance"]["classified"]["docs"] > 0 and assignment["general"]["classified"]["docs"] > 0
    assert {d: v["achieved_share"] for d, v in stats["mix"].items()} == pytest.approx({"finance": 0.51, "general": 0.49}, abs=0.005)
    by_name = {s["name"]: s["total"] for s in stats["stages"]}
    # what the heuristics let through and the quality classifier took out: tables of contents and
    # link-heavy pages the corpus manifest calls low quality, never one it calls an article
    assert by_name["quality_classifier"]["rejected_by_reason"]["quality_classifier_below_threshold"]["docs"] >= 1
    kinds = {p["url"]: p["kind"] for p in corpus_manifest["pages"]}
    removed = pq.read_table(run_dir / "rejected" / "quality_classifier").column("url").to_pylist()
    assert removed and all(kinds.get(url) == "low_quality" for url in removed)
    assert "quality_classifier" in result.stdout and "domains after domain_classifier" in result.stdout
    assert "pii redactions:" in result.stdout  # none in the bundled pages that get that far; the line says so
    names = [s["name"] for s in stats["stages"]]
    for stage in stats["stages"]:
        assert stage["total"]["in"]["bytes"] > 0
        # the HTML's own tokens are left uncounted by default (read.count_html_tokens): tokens from the extracted text on
        if names.index(stage["name"]) > names.index("extract"):
            assert stage["total"]["in"]["tokens"] > 0
    assert stats["stages"][names.index("extract")]["total"]["out"]["tokens"] > 0 and stats["retention"]["tokens_vs_raw"] is None
    assert 0 < stats["retention"]["tokens_vs_extracted"] < 0.5
