"""Decontamination against the shipped evaluation text, on real pages of the bundled corpus."""

import html
import re

import pytest
from datatrove.data import Document

from curation.filters.decontamination import Decontaminate, build_index, find_contamination, load_index, read_eval_texts
from curation.core.document import new_document
from curation.readers import InputFile, read_file
from curation.core.stage import RAW_KEY, TextMeasure, run_stage
from curation.core.stats import StageStats
from pipelines.config import ConfigError, WebCorpusConfig
from pipelines.config_loading import load_config
from curation.filters.params import EVAL_TEXT
from pipelines.stages import build_stages, stage_names
from tests.conftest import CORPUS

EVAL_FILES = [str(EVAL_TEXT / "finance.jsonl"), str(EVAL_TEXT / "general.jsonl")]
HOST_ARTICLE = "file:///usr/lib/R/site-library/tm/texts/acq/reut-00001.xml"  # passes every stage as it is


def _passage(words: int) -> str:
    """A run of words from the middle of the finance evaluation text's longest document."""
    text = max(read_eval_texts(EVAL_FILES[0]), key=len)
    start = text.index("money")
    return " ".join(text[start:].split()[:words])


@pytest.fixture(scope="module")
def index():
    return load_index(EVAL_FILES, 13)


def test_a_shared_13_gram_is_found_whatever_its_case_and_punctuation(index):
    passage = _passage(13)
    assert find_contamination(f"Some unrelated words. {passage} And more.", index)[0] == "finance"
    shouted = re.sub(r"\s+", " ... ", passage.upper())
    assert find_contamination(shouted, index) == find_contamination(passage, index)
    assert find_contamination(_passage(12), index) is None  # one word short of an n-gram


def test_runs_of_numbers_are_not_indexed():
    table = "0, 1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987"
    index = build_index({"numbers": [table], "words": ["a b c d"]}, 4)
    assert set(index.owners.values()) == {"words"} and len(index) == 1
    assert find_contamination("10 20 30 40 50", index) is None


def test_an_n_gram_in_two_sets_belongs_to_the_first_by_name():
    index = build_index({"b": ["one two three"], "a": ["one two three four"]}, 3)
    assert find_contamination("ONE, two; three!", index)[0] == "a"


def test_the_config_section_defaults_to_the_shipped_text_and_names_a_bad_path(tmp_path):
    cfg = load_config()
    assert cfg.decontaminate.enabled and cfg.decontaminate.ngram == 13
    assert cfg.decontaminate.eval_paths == EVAL_FILES
    assert stage_names(cfg).index("decontaminate") == stage_names(cfg).index("language") + 1
    schema = WebCorpusConfig.model_json_schema()["$defs"]["DecontaminateConfig"]["properties"]["eval_paths"]
    assert schema["path"] == "read"
    with pytest.raises(ConfigError, match=r"decontaminate\.eval_paths.*not found"):
        load_config(overrides=[f"decontaminate.eval_paths=[{tmp_path / 'missing.jsonl'}]"])
    assert "decontaminate" not in stage_names(load_config(overrides=["decontaminate.enabled=false"]))


def _plant(doc, passage: str) -> Document:
    """A copy of a page as read (undecoded bytes) with ``passage`` as one more paragraph after its first."""
    page = doc.metadata[RAW_KEY].decode("utf-8").replace("</p>", f"</p>\n<p>{html.escape(passage)}</p>", 1)
    return Document(text=doc.text, id=doc.id + "+planted", metadata={**doc.metadata, RAW_KEY: page.encode("utf-8")})


def _curate(docs):
    """Every per-document stage of the default run over ``docs``: (kept ids, {id: (stage, reason)}, stats)."""
    stages = build_stages(load_config())
    stats = {s.name: StageStats(s.name) for s in stages}
    rejected = {}
    for stage in stages:
        stage.open()
    try:
        for stage in stages:
            sink = lambda d, r, raw, s=stage.name: rejected.__setitem__(d.id, (s, r, d))  # noqa: E731
            docs = run_stage(stage, docs, stats[stage.name], TextMeasure(lambda t: len(t.split())), sink)
        kept = [d.id for d in docs]
    finally:
        for stage in stages:
            stage.close()
    return kept, rejected, stats


@pytest.fixture(scope="module")
def curated():
    """A WARC shard of the bundled corpus through every stage, with and without a planted copy of one of its pages."""
    file = InputFile(str(CORPUS / "warc" / "finance-00000.warc.gz"), "sample", "finance", "warc")
    docs = list(read_file(file))
    host = next(d for d in docs if d.metadata["url"] == HOST_ARTICLE)
    return docs, _curate([*docs, _plant(host, _passage(40))]), _curate(list(read_file(file)))


def test_a_planted_passage_of_reference_text_is_removed_and_nothing_else(curated):
    docs, (kept, rejected, stats), (kept_clean, rejected_clean, _) = curated
    host = next(d for d in docs if d.metadata["url"] == HOST_ARTICLE)
    stage, reason, doc = rejected[host.id + "+planted"]
    assert (stage, reason) == ("decontaminate", "contaminated:finance")
    assert doc.metadata["contamination"]["eval_set"] == "finance" and len(doc.metadata["contamination"]["ngram"].split()) == 13
    assert host.id in kept  # the page itself, without the passage, goes through
    # every other document meets the same fate as in a pass without the planted copy
    assert kept == kept_clean
    assert {i: (s, r) for i, (s, r, _) in rejected.items() if i != host.id + "+planted"} == {i: (s, r) for i, (s, r, _) in rejected_clean.items()}
    assert not any(s == "decontaminate" for s, _, _ in rejected_clean.values())
    decon = stats["decontaminate"]
    assert decon.invariant_violations() == []
    assert decon.total().rejected.docs == 1 and decon.domains["finance"].reasons["contaminated:finance"].docs == 1
    assert decon.total().in_.docs == stats["language"].total().kept.docs > 50


def test_the_stage_rejects_with_the_text_the_document_entered_with():
    stage = Decontaminate(EVAL_FILES, 13)
    doc = new_document("Intro. " + _passage(20), "x#0", "test", "finance", None)
    rejected = []
    kept = list(run_stage(stage, [doc], StageStats(stage.name), TextMeasure(), lambda d, r, raw: rejected.append((d.text, r))))
    assert kept == [] and rejected == [("Intro. " + _passage(20), "contaminated:finance")]


def test_a_process_builds_the_index_once_until_the_files_change(tmp_path):
    from curation.filters.decontamination import shared_index

    path = tmp_path / "finance.jsonl"
    path.write_text('{"text": "one two three four five"}\n')
    first = shared_index([str(path)], 3)
    assert shared_index([str(path)], 3) is first
    path.write_text('{"text": "six seven eight nine ten eleven"}\n')
    assert find_contamination("seven eight nine", shared_index([str(path)], 3)) == ("finance", "seven eight nine")
