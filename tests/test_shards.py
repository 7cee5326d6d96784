"""Mixing in tokens and the token shards: ratios, the shard format, and the tokenizer's round trip."""

import json

import numpy as np
import pytest

from curation.mixing.plan import mixture_total, plan_domain
from curation.mixing.selection import ShardSummary, plan_mixture
from curation.writers.shards import read_documents
from pipelines.config import ConfigError
from pipelines.config_loading import load_config
from tests.conftest import CORPUS
from tokenizer.model import Tokenizer
from tokenizer.shards import TokenShard, file_sha256, token_dtype
from tokenizer.train import SentencePieceSettings, train_sentencepiece


def test_shards_hold_the_target_ratio_within_half_a_point(mixed_run):
    _, stats, manifest = mixed_run
    for domain, target in {"finance": 0.51, "general": 0.49}.items():
        achieved = manifest["domains"][domain]["tokens"] / manifest["tokens"]
        assert abs(achieved - target) < 0.005, (domain, achieved)
        assert stats["mix"][domain]["achieved_share"] == pytest.approx(achieved, abs=1e-6)
    assert manifest["tokens"] == sum(s["tokens"] for s in manifest["shards"]) == stats["retention"]["tokens_in_shards"]


def test_shards_memory_map_and_match_the_manifest(mixed_run):
    cfg, _, manifest = mixed_run
    tokenizer = Tokenizer(cfg.run_dir / "tokenizer" / "spm.model")
    assert manifest["tokenizer"]["sha256"] == tokenizer.sha256 and manifest["tokenizer"]["eos_id"] == tokenizer.eos_id
    assert manifest["dtype"] == "uint16" == token_dtype(tokenizer.vocab_size).name
    assert len(manifest["shards"]) >= 2
    texts = {d.id: d.text for p in (cfg.run_dir / "deduped").glob("*.parquet") for d in read_documents(p)}
    seen = []
    for entry in manifest["shards"]:
        path = cfg.run_dir / "tokens" / entry["file"]
        assert file_sha256(path) == entry["sha256"]
        shard = TokenShard(path)
        assert not shard.tokens.flags.owndata  # a view of the mapped file, not a copy
        assert len(shard) == entry["documents"] and shard.offsets[-1] == len(shard.tokens) == entry["tokens"]
        for domain, counts in entry["domains"].items():
            rows = [i for i in range(len(shard)) if shard.domains[i].as_py() == domain]
            assert len(rows) == counts["documents"]
            assert sum(len(shard.document(i)) for i in rows) == counts["tokens"]
        for i in range(len(shard)):
            doc = shard.document(i)
            assert doc[-1] == tokenizer.eos_id and tokenizer.eos_id not in doc[:-1]
            doc_id = shard.doc_ids[i].as_py()
            assert tokenizer.decode(doc[:-1].tolist()) == texts[doc_id]
            seen.append(doc_id)
    # shuffled across shards, not in input order
    assert seen != sorted(seen)


def test_left_out_documents_are_kept_with_their_reason(mixed_run):
    import pyarrow.parquet as pq

    cfg, stats, _ = mixed_run
    mix = next(s for s in stats["stages"] if s["name"] == "mix")
    rejected = [r for p in (cfg.run_dir / "rejected" / "mix").glob("*.parquet") for r in pq.read_table(p).to_pylist()]
    assert len(rejected) == mix["total"]["rejected"]["docs"] > 0
    assert {r["reason"] for r in rejected} == {"mix_not_selected"}


def test_plan_upsamples_a_short_domain_and_records_its_epochs():
    rng = np.random.default_rng(0)
    big, small = rng.integers(100, 2000, 300), rng.integers(100, 2000, 20)
    total = 200_000
    a = plan_domain("general", 0.49, total, big, rng.random(300))
    b = plan_domain("finance", 0.51, total, small, rng.random(20))
    assert b.epochs > 2 and b.repeats.max() >= 3  # repeated documents, counted
    assert a.epochs < 1 and (a.repeats <= 1).all()
    for p in (a, b):
        assert abs(p.planned_tokens - p.target_tokens) < 100  # within one small document
    again = plan_domain("finance", 0.51, total, small, np.random.default_rng(0).random(320)[300:])
    assert again.planned_tokens == plan_domain("finance", 0.51, total, small, np.random.default_rng(0).random(320)[300:]).planned_tokens
    assert mixture_total({"a": 100, "b": 1000}, {"a": 0.5, "b": 0.5}, None) == 200


def test_the_natural_mix_keeps_every_document_once_at_its_own_share():
    rng = np.random.default_rng(1)
    shards = []
    for n, domains in ((40, ["general"] * 37 + ["finance"] * 3), (25, ["general"] * 25)):
        tokens = rng.integers(1, 3000, n)
        shards.append(ShardSummary(domains, tokens, rng.integers(0, 2**63, n, dtype=np.uint64), np.zeros(n, dtype=bool)))
    mixture = plan_mixture(shards, None, None, repeat_limit=4.0)
    assert set(mixture.repeats.values()) == {1} and len(mixture.repeats) == 65  # no document left out or repeated
    fin = sum(int(shards[0].tokens[r]) + 1 for r in range(37, 40))
    everything = sum(int(t) + 1 for s in shards for t in s.tokens)
    assert mixture.plans["finance"].planned_tokens == fin and mixture.plans["finance"].target_share == pytest.approx(fin / everything)
    assert load_config(overrides=["mix.natural=true", "mix.targets={finance: 1.0}"]).mix.natural  # the targets are not used


def test_bad_mix_targets_are_refused_by_name():
    with pytest.raises(ConfigError, match="mix.targets"):
        load_config(overrides=["mix.targets={finance: 0.6, general: 0.6}"])
    with pytest.raises(ConfigError, match="no share for"):
        load_config(overrides=["mix.targets={finance: 1.0}"])


def _multilingual_texts() -> list[str]:
    import gzip

    import trafilatura

    manifest = json.loads((CORPUS / "MANIFEST.json").read_text())
    lang = {p["url"]: p["language"] for p in manifest["pages"]}
    by_lang: dict[str, str] = {}
    for domain in ("finance", "general"):
        with gzip.open(CORPUS / "jsonl" / f"{domain}.jsonl.gz", "rt") as f:
            for line in f:
                page = json.loads(line)
                code = lang.get(page["url"])
                if code and code not in by_lang:
                    text = trafilatura.extract(page["html"]) or ""
                    if len(text) > 300:
                        by_lang[code] = text
    return list(by_lang.values())


def test_decode_of_encode_is_the_identity_on_real_multilingual_text(tmp_path):
    texts = _multilingual_texts()
    assert len(texts) >= 6  # en, de, fr, es, pt, it, ja, ...
    english_only = train_sentencepiece([t for t in texts[:1]], SentencePieceSettings(vocab_size=500))
    path = tmp_path / "spm.model"
    path.write_bytes(english_only)
    tok = Tokenizer(path)
    # spacing is part of the text: runs of spaces, tabs, blank lines and leading space survive too
    awkward = "  two leading spaces,\tthen a tab,   three spaces\n\n\nand blank lines  \n"
    for text in texts + [awkward]:
        assert tok.decode(tok.encode(text)) == text


def test_per_domain_shards_keep_each_domain_apart(mixed_run, tmp_path):
    import shutil

    from curation.readers.sources import list_shards
    from pipelines.mix import run_mix_and_shards

    cfg, _, mixed = mixed_run
    copy = tmp_path / "runs" / cfg.run_name
    shutil.copytree(cfg.run_dir, copy)  # the shared run stays as it is for other tests
    shutil.rmtree(copy / "tokens")
    (copy / "stats" / "mix.json").unlink()
    per_domain = cfg.model_copy(update={"shards": cfg.shards.model_copy(update={"per_domain": True}), "runs_dir": str(tmp_path / "runs")})
    _, manifest = run_mix_and_shards(per_domain, list_shards(per_domain.sources, per_domain.read, per_domain.data_roots), progress=False)
    assert manifest.per_domain_shards is True
    for entry in manifest.shards:
        domain = entry.file.split("/")[0]
        assert set(entry.domains) == {domain}
        assert {TokenShard(copy / "tokens" / entry.file).domains[i].as_py() for i in range(entry.documents)} == {domain}
    assert manifest.domains == mixed["domains"]  # the same documents, only laid out per domain
