"""Deduplication on real text: the bundled corpus's own near-duplicate groups, on a real Ray."""

import hashlib
import itertools
import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from curation.dedup.minhash import MinHasher, shingles
from curation.dedup.survivors import EXACT_REASON, FUZZY_REASON, choose_survivors
from curation.readers.sources import list_shards
from curation.writers.shards import read_documents
from pipelines.config_loading import load_config
from pipelines.dedup import run_dedup
from pipelines.web_corpus import run_web_corpus
from tests.conftest import CORPUS


def jaccard(a: str, b: str, ngram: int = 5) -> float:
    x, y = set(shingles(a, ngram)), set(shingles(b, ngram))
    return len(x & y) / len(x | y) if x | y else 1.0


@pytest.fixture(scope="module")
def dedup_run(tmp_path_factory, ray_local):
    """The JSONL form of the corpus with every filter off, so all near-duplicate versions reach dedup."""
    tmp = tmp_path_factory.mktemp("dedup")
    sources = [
        {"name": f"{d}-jsonl", "format": "jsonl", "domain": d, "paths": [str(CORPUS / "jsonl" / f"{d}.jsonl.gz")], "text_field": "html"}
        for d in ("finance", "general")
    ]
    tree = {
        "runs_dir": str(tmp / "runs"),
        "run_name": "dedup",
        "sources": sources,
        "language": {"enabled": False},
        "quality": {n: {"enabled": False} for n in ("gopher_repetition", "gopher_quality", "c4_quality", "fineweb_quality", "classifier")},
        "tokenizer": {"vocab_size": 2000, "sample_rate": 0.3},
    }
    path = tmp / "run.yaml"
    path.write_text(json.dumps(tree))
    cfg = load_config(path)
    stats = run_web_corpus(cfg, progress=False)
    return cfg, stats


def _docs(cfg, folder):
    return {d.metadata["url"]: d for p in sorted((cfg.run_dir / folder).glob("*.parquet")) for d in read_documents(p)}


def test_signatures_are_identical_to_datasketch_on_real_documents(dedup_run):
    cfg, _ = dedup_run
    texts = [d.text for d in list(_docs(cfg, "filtered").values())[:150]]
    hasher = MinHasher(num_perm=128, ngram=5, seed=1)
    ours = hasher.signatures(texts)
    for text, row in zip(texts, ours):
        assert np.array_equal(row, hasher.datasketch_minhash(text).hashvalues)


def test_known_near_duplicate_groups_collapse_to_one_survivor(dedup_run, corpus_manifest):
    cfg, stats = dedup_run
    filtered = _docs(cfg, "filtered")
    kept = _docs(cfg, "deduped")
    removed = {r["url"]: r for p in (cfg.run_dir / "rejected" / "dedup").glob("*.parquet") for r in pq.read_table(p).to_pylist()}
    url_of = {p["id"]: p["url"] for p in corpus_manifest["pages"]}
    close, far, far_merged = 0, 0, 0
    for members in corpus_manifest["near_duplicate_groups"].values():
        urls = [url_of[m] for m in members if url_of[m] in filtered]
        for a, b in itertools.combinations(urls, 2):
            j = jaccard(filtered[a].text, filtered[b].text)
            if j >= 0.9:
                close += 1
                # same cluster, and not both survivors
                assert not (a in kept and b in kept), (a, b, j)
                clusters = {json.loads(removed[u]["metadata"])["dedup_cluster"] for u in (a, b) if u in removed}
                assert len(clusters) == 1
            elif j < 0.6:
                far += 1
                far_merged += a in removed and b in removed and json.loads(removed[a]["metadata"])["dedup_cluster"] == json.loads(removed[b]["metadata"])["dedup_cluster"]
    assert close >= 20
    assert far == 0 or far_merged / far <= 0.2
    # every removed document names a survivor that is really in the output
    for row in removed.values():
        meta = json.loads(row["metadata"])
        assert row["reason"] in (EXACT_REASON, FUZZY_REASON)
        survivor = meta["duplicate_of"]
        if row["reason"] == FUZZY_REASON:
            assert survivor in {d.id for d in kept.values()}
    dedup = next(s for s in stats["stages"] if s["name"] == "dedup")
    assert dedup["total"]["rejected"]["docs"] == len(removed) > 0
    reasons = dedup["total"]["rejected_by_reason"]
    assert reasons[EXACT_REASON]["docs"] > 0 and reasons[FUZZY_REASON]["docs"] > 0
    assert stats["invariant_violations"] == []


def test_a_pair_below_the_threshold_survives(dedup_run):
    cfg, _ = dedup_run
    filtered, kept = _docs(cfg, "filtered"), _docs(cfg, "deduped")
    # two Reuters wire stories on the same event, largely the same words: similar, not duplicates
    a = "file:///usr/lib/R/site-library/tm/texts/crude/reut-00018.xml"
    b = "file:///usr/lib/R/site-library/tm/texts/crude/reut-00019.xml"
    assert 0.6 < jaccard(filtered[a].text, filtered[b].text) < 0.75
    assert a in kept and b in kept


def _dedup_outputs(run_dir) -> dict[str, str]:
    files = sorted((run_dir / "deduped").glob("*")) + sorted((run_dir / "rejected" / "dedup").glob("*"))
    return {f"{p.parent.name}/{p.name}": hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@pytest.mark.slow
def test_output_is_identical_across_partitionings_and_runs(dedup_run):
    cfg, _ = dedup_run
    reference = _dedup_outputs(cfg.run_dir)
    for partitions in (1, 3, 2):
        for path in ("deduped", "rejected/dedup", "stats/dedup", "dedup"):
            shutil.rmtree(cfg.run_dir / path, ignore_errors=True)
        again = cfg.model_copy(update={"dedup": cfg.dedup.model_copy(update={"partitions": partitions})})
        summary = run_dedup(again, list_shards(again.sources, again.read, again.data_roots), progress=False)
        assert summary["partitions"] == partitions
        assert _dedup_outputs(cfg.run_dir) == reference


def test_survivor_is_best_scored_then_lowest_id_hash_and_exact_goes_first():
    idx = np.array([10, 11, 12, 13, 14])
    root = np.array([10, 10, 10, 10, 10])
    score = np.array([0.1, 0.9, 0.9, 0.5, 0.9])
    id_hash = np.array([5, 7, 3, 1, 3], dtype=np.uint64)
    exact = np.array([1, 2, 3, 2, 3], dtype=np.uint64)
    decisions = choose_survivors(idx, root, score, id_hash, exact)
    # 12 and 14 tie on score and id hash; the index breaks it: 12 survives, 14 is its exact copy
    assert decisions[14].reason == EXACT_REASON and decisions[14].kept == 12
    assert decisions[13].reason == EXACT_REASON and decisions[13].kept == 11
    assert {k: (v.reason, v.kept) for k, v in decisions.items() if v.reason == FUZZY_REASON} == {
        11: (FUZZY_REASON, 12),
        10: (FUZZY_REASON, 12),
    }
    assert 12 not in decisions and {d.cluster for d in decisions.values()} == {10}
    shuffled = np.array([3, 0, 4, 1, 2])
    again = choose_survivors(idx[shuffled], root[shuffled], score[shuffled], id_hash[shuffled], exact[shuffled])
    assert again == decisions


def test_a_new_run_drops_duplicates_of_an_earlier_runs_corpus(dedup_run, tmp_path):
    earlier, _ = dedup_run
    index = earlier.run_dir / "dedup" / "index"
    earlier_urls = set(_docs(earlier, "deduped"))
    tree = {
        "runs_dir": str(tmp_path / "runs"),
        "run_name": "later",
        # the same finance pages, now as WARC records: every one already lies in the earlier corpus
        "sources": [{"name": "fin", "format": "warc", "domain": "finance", "paths": [str(CORPUS / "warc" / "finance-00000.warc.gz")]}],
        "language": {"enabled": False},
        "quality": {n: {"enabled": False} for n in ("gopher_repetition", "gopher_quality", "c4_quality", "fineweb_quality", "classifier")},
        "tokenizer": {"vocab_size": 1000, "sample_rate": 0.5},
        "dedup": {"previous_indexes": [str(index)]},
        # every document is a duplicate of the earlier corpus: nothing is left to mix into shards
        "mix": {"enabled": False, "targets": {"finance": 1.0}},
        "shards": {"enabled": False},
    }
    path = tmp_path / "later.yaml"
    path.write_text(json.dumps(tree))
    later = load_config(path)
    stats = run_web_corpus(later, progress=False)
    assert stats["invariant_violations"] == []
    filtered = _docs(later, "filtered")
    removed = {r["url"]: json.loads(r["metadata"]) for p in (later.run_dir / "rejected" / "dedup").glob("*.parquet") for r in pq.read_table(p).to_pylist()}
    seen_before = [u for u in filtered if u in earlier_urls]
    assert len(seen_before) >= 50
    for url in seen_before:
        assert url in removed and removed[url]["duplicate_of"].startswith("dedup:"), url
    # with mixing on, nothing is left to mix: the run fails by name and still leaves its funnel
    mixing = load_config(path, ["mix.enabled=true", "shards.enabled=true", "run_name=mixing"])
    with pytest.raises(RuntimeError, match="no curated tokens left"):
        run_web_corpus(mixing, progress=False)
    partial = json.loads((mixing.run_dir / "stats.json").read_text())
    assert partial["status"] == "failed" and "no curated tokens left" in partial["error"]
    assert partial["completed_shards"] == {"curate": 1, "dedup": 1} and partial["invariant_violations"] == []
    # a mismatched index is refused by name before any work is done
    bad = load_config(path, ["dedup.threshold=0.5", "run_name=bad"])
    with pytest.raises(Exception, match=r"dedup\.previous_indexes\.0"):
        run_web_corpus(bad, progress=False)


def test_star_steps_accept_a_partition_without_edges():
    """A run whose filters left nothing (or a partition no edge hashes to) must not crash dedup."""
    import numpy as np

    from curation.dedup.components import both_directions, large_star, orient_for_small_star, small_star

    empty = np.empty(0, dtype=np.int64)
    for step in (large_star, small_star, orient_for_small_star, both_directions):
        src, dst = step(empty, empty)
        assert len(src) == len(dst) == 0
