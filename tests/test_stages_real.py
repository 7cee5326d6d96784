"""Each stage on real pages of the bundled corpus (JSONL form), without Ray."""

from collections import Counter

import pytest

from curation.core.stage import TextMeasure, run_stage
from curation.core.stats import StageStats
from curation.readers import InputFile, read_file
from pipelines.config_loading import load_config
from pipelines.stages import build_stages
from tests.conftest import CORPUS

REUTERS_ARTICLE = "file:///usr/lib/R/site-library/tm/texts/acq/reut-00001.xml"
GERMAN_GUIDE_PAGE = "file:///usr/share/doc/gnucash-docs/gnucash-guide-de/accts-concepts1.html"
TOC_PAGE = "file:///usr/share/doc/gnucash-docs/gnucash-guide-en/chapter_basics.html"


@pytest.fixture(scope="module")
def outcomes():
    """url -> (stage that rejected it or None, reason, the document as the stage saw it)."""
    stages = build_stages(load_config())
    for stage in stages:
        stage.open()
    results = {}
    try:
        for domain in ("finance", "general"):
            file = InputFile(str(CORPUS / "jsonl" / f"{domain}.jsonl.gz"), "sample", domain, "jsonl", options={"text_field": "html"})
            for doc in read_file(file):
                url, verdict = doc.metadata["url"], (None, None, doc)
                for stage in stages:
                    rejected = []
                    kept = list(run_stage(stage, [doc], StageStats(stage.name), TextMeasure(), lambda d, r, raw: rejected.append((d, r))))
                    if rejected:
                        verdict = (stage.name, rejected[0][1], rejected[0][0])
                        break
                    doc = kept[0]
                    verdict = (None, None, doc)
                results[url] = verdict
    finally:
        for stage in stages:
            stage.close()
    return results


def test_an_english_news_article_passes_every_stage(outcomes):
    stage, reason, doc = outcomes[REUTERS_ARTICLE]
    assert stage is None, reason
    assert doc.metadata["language"] == "en" and doc.metadata["language_score"] > 0.9
    assert "<p>" not in doc.text and "<title>" not in doc.text and len(doc.text.split()) > 100  # text, not HTML


def test_a_german_page_is_rejected_by_language_id_with_its_score(outcomes):
    stage, reason, doc = outcomes[GERMAN_GUIDE_PAGE]
    assert (stage, reason) == ("language", "language:de")
    assert doc.metadata["language"] == "de" and doc.metadata["language_score"] > 0.65


def test_a_table_of_contents_page_is_rejected_by_a_named_quality_rule(outcomes):
    stage, reason, _ = outcomes[TOC_PAGE]
    assert (stage, reason) == ("gopher_quality", "gopher_short_doc")


def test_filters_separate_low_quality_pages_from_articles(outcomes, corpus_manifest):
    english = [p for p in corpus_manifest["pages"] if p["language"] == "en" and p["url"] in outcomes]
    kept = Counter(p["kind"] for p in english if outcomes[p["url"]][0] is None)
    total = Counter(p["kind"] for p in english)
    low_quality_kept = kept["low_quality"] / total["low_quality"]
    article_kept = kept["article"] / total["article"]
    assert total["low_quality"] >= 30 and total["article"] >= 200
    assert low_quality_kept <= 0.1
    assert article_kept >= 5 * low_quality_kept and article_kept >= 0.4


def test_every_non_english_page_is_rejected_by_language_and_nothing_else(outcomes, corpus_manifest):
    foreign = [p for p in corpus_manifest["pages"] if p["language"] not in ("en",) and p["url"] in outcomes]
    assert len({p["language"] for p in foreign}) >= 5
    stages = Counter(outcomes[p["url"]][0] for p in foreign)
    assert stages["language"] >= 0.95 * len(foreign)
