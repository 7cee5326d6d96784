"""Every sped-up filter takes datatrove's decisions, with datatrove's reasons, document by document
on the bundled corpus (its pages' main text, and its raw HTML as the text of a noisier document),
plus hand-made documents that reach each rejection and n-gram keys that collide."""

from __future__ import annotations

import functools
import gzip
import json

import pytest
from datatrove.data import Document
from datatrove.pipeline.filters import FineWebQualityFilter, GopherQualityFilter, GopherRepetitionFilter
from datatrove.utils.word_tokenizers import SpaCyTokenizer

from curation.filters.gopher_repetition import FastGopherRepetitionFilter
from curation.filters.words import KeptVocabularyTokenizer
from tests.conftest import ROOT

CORPUS = ROOT / "data" / "sample_corpus" / "jsonl"


@functools.cache
def texts() -> tuple[str, ...]:
    import trafilatura

    out = []
    for domain in ("finance", "general"):
        with gzip.open(CORPUS / f"{domain}.jsonl.gz", "rt") as f:
            for line in f:
                html = json.loads(line)["html"]
                out.append(trafilatura.extract(html, favor_precision=True, deduplicate=False) or "")
                out.append(html[:4_000])  # markup-heavy text: other tokens, other repetitions
    para = "The ledger balances debits and credits.\n\n"
    out += [
        "",
        para * 10,  # duplicated paragraphs
        "A line that repeats\n" * 8 + "and one that does not at all, being longer than the others here",
        ("buy now " * 200).strip(),  # top 2-gram
        " ".join(f"w{i}" for i in range(300)) + " " + " ".join(f"w{i}" for i in range(120)),  # duplicated n-grams
        ("ab c d e f g h i j k " + "a bc d e f g h i j k ") * 30,  # keys joined without a separator collide
        "short text",
    ]
    return tuple(out)


@pytest.fixture(scope="module")
def kept_vocabulary():
    return KeptVocabularyTokenizer("en", max_lexemes=20_000)  # small: the vocabulary restarts during the test


def test_words_are_datatrove_words(kept_vocabulary):
    reference = SpaCyTokenizer("en")
    for i, text in enumerate(texts()):
        assert kept_vocabulary.word_tokenize(text) == reference.word_tokenize(text), i


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (lambda tok: FastGopherRepetitionFilter(language=tok), lambda: GopherRepetitionFilter()),
        (lambda tok: GopherQualityFilter(language=tok), lambda: GopherQualityFilter()),
        (lambda tok: FineWebQualityFilter(language=tok), lambda: FineWebQualityFilter()),
    ],
    ids=["gopher_repetition", "gopher_quality", "fineweb_quality"],
)
def test_sped_up_filters_decide_as_datatrove(kept_vocabulary, ours, theirs):
    fast, reference = ours(kept_vocabulary), theirs()
    decisions = []
    for i, text in enumerate(texts()):
        mine, expected = fast.filter(Document(text=text, id=str(i))), reference.filter(Document(text=text, id=str(i)))
        assert mine == expected, (i, text[:200])
        decisions.append(expected if isinstance(expected, tuple) else (True, "kept"))
    assert len({reason for _, reason in decisions}) >= 3  # kept and rejected for several reasons, not one path
