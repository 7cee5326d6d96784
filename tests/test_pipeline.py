"""The pipeline on a real Ray, over real shards of the bundled corpus."""

import copy
import gzip
import json

import pyarrow.parquet as pq
import pytest

from pipelines.config import ConfigError
from pipelines.config_loading import load_config
from pipelines.stages import EXTRACT
from pipelines.web_corpus import run_web_corpus
from tests.conftest import CORPUS, REAL_CRAWL
from tests.run_fingerprint import run_fingerprint
from tokenizer.train import model_sha256


def small_config(tmp_path, extra_sources=(), **overrides):
    sources = [
        {"name": "fin", "format": "warc", "domain": "finance", "paths": [str(CORPUS / "warc" / "finance-00000.warc.gz")]},
        {"name": "gen", "format": "warc", "domain": "general", "paths": [str(CORPUS / "warc" / "general-00000.warc.gz")]},
        {"name": "iana", "format": "warc", "domain": None, "paths": [str(REAL_CRAWL)]},  # untagged: classified
        *extra_sources,
    ]
    tree = {"runs_dir": str(tmp_path / "runs"), "run_name": "small", "sources": sources, "tokenizer": {"vocab_size": 2000}}
    path = tmp_path / "run.yaml"
    path.write_text(json.dumps(tree))
    return load_config(path, [f"{k}={v}" for k, v in overrides.items()])


def _rows(paths) -> int:
    return sum(pq.ParquetFile(p).metadata.num_rows for p in paths)


def test_funnel_balances_counts_tokens_and_keeps_every_rejected_document(tmp_path, ray_local):
    cfg = small_config(tmp_path)
    stats = run_web_corpus(cfg, progress=False)
    run = cfg.run_dir
    assert stats["invariant_violations"] == []
    names = [s["name"] for s in stats["stages"]]
    assert names == [
        "read", "url_filter", "extract", "language", "decontaminate", "gopher_repetition", "gopher_quality", "c4_quality", "fineweb_quality",
        "quality_classifier", "domain_classifier", "pii", "dedup", "mix",
    ]  # fmt: skip
    for before, after in zip(stats["stages"], stats["stages"][1:]):
        # what leaves one stage is exactly what enters the next, per domain and in all three measures,
        # once the documents the domain classifier moved from "untagged" to their domain are followed
        for domain, d in after["domains"].items():
            expected = {m: before["domains"].get(domain, {}).get("out", {}).get(m, 0) for m in ("docs", "bytes", "tokens")}
            for other in before["domains"].values():
                for target, moved in other.get("reassigned_to", {}).items():
                    for m in expected:
                        expected[m] += moved[m] if target == domain else 0
            for m in expected:
                expected[m] -= sum(c[m] for c in before["domains"].get(domain, {}).get("reassigned_to", {}).values())
            assert d["in"] == expected, (before["name"], after["name"], domain)
    names = [s["name"] for s in stats["stages"]]
    for stage in stats["stages"]:
        total = stage["total"]
        # the HTML's own tokens are left uncounted by default (read.count_html_tokens): tokens from the extracted text on
        assert total["in"]["tokens"] > 0 or names.index(stage["name"]) <= names.index(EXTRACT)
        rejected = sorted((run / "rejected" / stage["name"]).glob("*.parquet"))
        assert _rows(rejected) == total["rejected"]["docs"]
        for path in rejected:
            table = pq.read_table(path)
            assert all(table.column("reason").to_pylist())
    by_name = {s["name"]: s["total"] for s in stats["stages"]}
    assert _rows(sorted((run / "filtered").glob("*.parquet"))) == by_name["pii"]["kept"]["docs"] > 0
    assert _rows(sorted((run / "deduped").glob("*.parquet"))) == by_name["dedup"]["kept"]["docs"] > 0
    # the last measure of the funnel: tokens in the shards = tokens the mix kept + one EOS per document
    assert stats["retention"]["tokens_in_shards"] == by_name["mix"]["out"]["tokens"] + by_name["mix"]["out"]["docs"]
    assert stats["tokenizer"]["sha256"] == model_sha256((run / "tokenizer" / "spm.model").read_bytes())
    assert set(stats["retention"]["per_domain"]) == {"finance", "general", "untagged"}
    assert stats["retention"]["per_domain"]["untagged"]["docs_kept"] == 0  # every one got a domain
    classified = {d: v["classified"]["docs"] for d, v in stats["domain_assignment"]["per_domain"].items()}
    assert sum(classified.values()) == by_name["domain_classifier"]["in"]["docs"] - sum(
        v["tagged"]["docs"] for v in stats["domain_assignment"]["per_domain"].values()
    ) > 0
    assert 0 < stats["retention"]["tokens_vs_extracted"] < 1
    on_disk = json.loads((run / "stats.json").read_text())
    assert on_disk["stages"] == stats["stages"]


def test_corrupt_and_hostile_inputs_are_counted_not_fatal(tmp_path, ray_local):
    bad = tmp_path / "bad"
    bad.mkdir()
    data = REAL_CRAWL.read_bytes()
    (bad / "truncated.warc.gz").write_bytes(data[: len(data) // 2])
    lines = [
        json.dumps({"url": "u1", "text": "<html><body>" + "<p>Plain text.</p>" * 3 + "</body></html>"}),
        '{"url": "u2", "text": "unterminated',
        json.dumps({"url": "u3", "text": ""}),
        json.dumps({"url": "u4", "text": "\x00\x01\x02 binary \x00" * 100}),
        json.dumps({"url": "u5", "text": "x" * 3_000_000}),
    ]
    with gzip.open(bad / "mixed.jsonl.gz", "wt") as f:
        f.write("\n".join(lines) + "\n")
    extra = [
        {"name": "broken-warc", "format": "warc", "domain": "general", "paths": [str(bad / "truncated.warc.gz")]},
        {"name": "hostile-jsonl", "format": "jsonl", "domain": "finance", "paths": [str(bad / "mixed.jsonl.gz")]},
    ]
    cfg = small_config(tmp_path, extra, **{"read.max_document_bytes": 2_000_000})
    stats = run_web_corpus(cfg, progress=False)
    assert stats["invariant_violations"] == []
    read = stats["stages"][0]
    reasons = {**read["domains"]["general"]["rejected_by_reason"], **read["domains"]["finance"]["rejected_by_reason"]}
    for reason in ("truncated_archive", "malformed_json", "empty", "binary_content", "too_large"):
        assert reasons[reason]["docs"] >= 1, reason
    rejected = pq.read_table(cfg.run_dir / "rejected" / "read" / "broken-warc-00000.parquet").to_pylist()
    tail = [r for r in rejected if r["reason"] == "truncated_archive"]
    assert len(tail) == 1 and len(tail[0]["raw"]) > 0


def test_a_changed_config_cannot_resume_an_existing_run(tmp_path, ray_local):
    cfg = small_config(tmp_path)
    cfg.run_dir.mkdir(parents=True)
    from pipelines.run_dir import RunDir

    RunDir(cfg.run_dir).prepare(cfg)
    changed = small_config(tmp_path, **{"language.threshold": 0.9})
    with pytest.raises(ConfigError, match="another configuration"):
        run_web_corpus(changed, progress=False)


def test_a_source_matching_no_file_is_named(tmp_path):
    cfg = small_config(tmp_path, [{"name": "ghost", "format": "jsonl", "domain": "general", "paths": [str(tmp_path / "none*.jsonl")]}])
    with pytest.raises(ConfigError, match=r"sources\.3\.paths.*ghost"):
        run_web_corpus(cfg, progress=False)


def _html_tokens_zeroed(stage: dict, up_to_extract: list[str]) -> dict:
    """A stage's funnel as a run that leaves HTML uncounted writes it: no tokens before the extracted text."""
    stage = copy.deepcopy({k: v for k, v in stage.items() if k != "wall_time_s"})
    if stage["name"] not in up_to_extract:
        return stage
    for scope in (stage["total"], *stage["domains"].values()):
        for key, counts in scope.items():
            if key == "rejected_by_reason":
                for by_reason in counts.values():
                    by_reason["tokens"] = 0
            elif isinstance(counts, dict) and "tokens" in counts and not (stage["name"] == EXTRACT and key == "out"):
                counts["tokens"] = 0
    return stage


@pytest.mark.slow
def test_a_run_counting_the_html_writes_the_same_outputs_and_funnel_but_those_tokens(tmp_path, mixed_run):
    """``read.count_html_tokens=true`` counts every HTML record's tokens as it arrived: every output file is
    the default run's, and so is every figure of the funnel but the HTML's tokens (read, url_filter,
    extract's input), which the default run leaves at 0."""
    uncounted_cfg, stats, _ = mixed_run
    cfg = small_config(tmp_path, **{"shards.shard_tokens": 20000, "read.count_html_tokens": "true"})
    counted = run_web_corpus(cfg, progress=False)
    assert counted["invariant_violations"] == []

    def outputs(run_dir):
        return {k: v for k, v in run_fingerprint(run_dir).items() if k != "stats.json"}

    assert outputs(cfg.run_dir) == outputs(uncounted_cfg.run_dir)
    assert [s for s in stats["stages"] if s["name"] == "read"][0]["total"]["in"]["tokens"] == 0
    assert [s for s in counted["stages"] if s["name"] == "read"][0]["total"]["in"]["tokens"] > 0
    names = [s["name"] for s in counted["stages"]]
    up_to_extract = names[: names.index(EXTRACT) + 1]  # read, url_filter, extract
    assert [_html_tokens_zeroed(s, up_to_extract) for s in counted["stages"]] == [{k: v for k, v in s.items() if k != "wall_time_s"} for s in stats["stages"]]
    assert stats["retention"] == {**counted["retention"], "tokens_vs_raw": None} and counted["retention"]["tokens_vs_raw"] > 0
    assert "not counted" in stats["token_basis"] and "not counted" not in counted["token_basis"]
