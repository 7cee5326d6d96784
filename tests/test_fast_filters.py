"""Every sped-up filter takes datatrove's decisions, with datatrove's reasons, document by document
on the bundled corpus (its pages' main text, and its raw HTML as the text of a noisier document),
plus hand-made documents that reach each rejection and n-gram keys that collide; the language
stage also writes datatrove's label and score, C4 leaves datatrove's text, and the URL filter is
compared on the corpus's URLs and on URLs made from datatrove's own word lists."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from datatrove.data import Document
from datatrove.pipeline.filters import C4QualityFilter, FineWebQualityFilter, GopherQualityFilter, GopherRepetitionFilter
from datatrove.pipeline.filters.gopher_repetition_filter import find_all_duplicate, find_top_duplicate, get_n_grams
from datatrove.pipeline.filters.language_filter import LanguageFilter
from datatrove.pipeline.filters.url_filter import URLFilter
from datatrove.utils.text import split_into_words
from datatrove.utils.word_tokenizers import SpaCyTokenizer
from hypothesis import given, settings
from hypothesis import strategies as st

from curation.filters.c4_quality import FastC4QualityFilter
from curation.filters.fineweb_quality import FastFineWebQualityFilter
from curation.filters.gopher_quality import FastGopherQualityFilter
from curation.filters import gopher_repetition
from curation.filters.gopher_repetition import FastGopherRepetitionFilter, NGramKeys
from curation.filters.language import LanguageID, LocalFT176LID, bundled_lid_model
from curation.filters.params import C4QualityConfig
from curation.filters.url_filter import WORD_LISTS, FastURLFilter, _asset_lines
from curation.filters.words import KeptVocabularyTokenizer
from tests.conftest import ROOT, bundled_pages


@functools.cache
def texts() -> tuple[str, ...]:
    import trafilatura

    from curation.extraction import trafilatura_fast

    out = []
    trafilatura_fast.install()  # as the extract stage runs it: the same texts (tests/test_trafilatura_fast.py), half the CPU
    try:
        for page in bundled_pages():
            html = page["html"]
            out.append(trafilatura.extract(html, favor_precision=True, deduplicate=False) or "")
            out.append(html[:4_000])  # markup-heavy text: other tokens, other repetitions
    finally:
        trafilatura_fast.uninstall()
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


@pytest.fixture
def spacy_remembered(monkeypatch):
    """datatrove's spaCy tokenizer, the reference side of every filter compared, answers for the
    same texts in each of these tests: its answers are remembered per text for the module (spaCy is
    deterministic) and a copy handed out each time, so every reference filter still runs its own
    code on every document. test_words_are_datatrove_words, which compares the tokenizers
    themselves, does not use this."""
    for name in ("word_tokenize", "sent_tokenize", "span_tokenize"):
        original, memo = getattr(SpaCyTokenizer, name), SPACY_ANSWERS.setdefault(name, {})

        def remembered(self, text, _original=original, _memo=memo):
            key = (self.language, text)
            if key not in _memo:
                _memo[key] = _original(self, text)
            return list(_memo[key])

        monkeypatch.setattr(SpaCyTokenizer, name, remembered)


SPACY_ANSWERS: dict[str, dict] = {}


@pytest.fixture(scope="module")
def kept_vocabulary():
    return KeptVocabularyTokenizer("en", max_lexemes=20_000)  # small: the vocabulary restarts during the test


# whitespace the kept-vocabulary tokenizer splits a text at, next to special cases and affixes
SEGMENT_CASES = (
    "don't\n's", ":)\t:)", "8 )", "a.\n.b", "e.g.\u00a0e.g.", "C++  C++", " lead", "trail \n", "\r\nx\r\n", "(:\n:)",
    "x\u2028y\u3000z", "  ", "\n", "'s\n's 's  's", "o.O\to.0", "\u00a0\u00a0a", "IS_ALPHA and more",
    # special cases' patterns across one space, beside real special cases they could hide
    ": ) :) : )", "(: :) ( : (:", "x' s 's it's", "10 a.m . a.m. (a.m.)", "o. O o.O", ":- ) :-) :-)) : -)", "Note: 1 thing: p",
)


def test_words_are_datatrove_words(kept_vocabulary):
    reference = SpaCyTokenizer("en")
    # datatrove's answer is taken once per text (it is deterministic) and left for the tests below
    # that remember it (``spacy_remembered``); ours is taken every time
    memo = SPACY_ANSWERS.setdefault("word_tokenize", {})
    for i, text in enumerate(texts() + SEGMENT_CASES + texts()):  # twice: the second time from spaCy's cache
        if ("en", text) not in memo:
            memo["en", text] = reference.word_tokenize(text)
        assert kept_vocabulary.word_tokenize(text) == memo["en", text], (i, text[:200])
    # the cases above include spaces a pattern could match across, whose pieces are split together
    assert any(" " in piece for text in SEGMENT_CASES for piece in kept_vocabulary._pieces.pieces(text))


def test_sentences_are_datatrove_sentences(kept_vocabulary):
    reference = SpaCyTokenizer("en")  # the kept vocabulary leaves out the flags spaCy's sentencizer reads
    for i, text in enumerate(texts()[:40]):
        assert kept_vocabulary.span_tokenize(text) == reference.span_tokenize(text), i


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (lambda tok: FastGopherRepetitionFilter(language=tok), lambda: GopherRepetitionFilter()),
        (lambda tok: FastGopherQualityFilter(language=tok), lambda: GopherQualityFilter()),
        (lambda tok: FineWebQualityFilter(language=tok), lambda: FineWebQualityFilter()),
    ],
    ids=["gopher_repetition", "gopher_quality", "fineweb_quality"],
)
def test_sped_up_filters_decide_as_datatrove(kept_vocabulary, ours, theirs, spacy_remembered):
    fast, reference = ours(kept_vocabulary), theirs()
    decisions = []
    for i, text in enumerate(texts()):
        mine, expected = fast.filter(Document(text=text, id=str(i))), reference.filter(Document(text=text, id=str(i)))
        assert mine == expected, (i, text[:200])
        decisions.append(expected if isinstance(expected, tuple) else (True, "kept"))
    assert len({reason for _, reason in decisions}) >= 3  # kept and rejected for several reasons, not one path


def duplicated_ngram_chars(words: list[str], n: int) -> int:
    return NGramKeys(words).repeated_chars(n)


def datatrove_top_ngram_chars(words: list[str], n: int) -> int | None:
    n_grams = get_n_grams(words, n)
    return find_top_duplicate(n_grams) if n_grams else None  # datatrove skips an n with no n-grams


def test_duplicated_ngram_chars_are_datatrove_counts(spacy_remembered):
    """The repeated characters themselves, not only the decisions, for every n of the run."""
    for i, text in enumerate(texts()):
        words = split_into_words(text, "en")  # datatrove's words (remembered from the test above)
        for n in range(5, 11):
            assert duplicated_ngram_chars(words, n) == find_all_duplicate(words, n), (i, n, text[:200])


# a few short words: word sequences repeat, and different ones join into the same key
@given(st.lists(st.sampled_from(["a", "b", "ab", "ba", "c", "\ud800", "é"]), max_size=60), st.integers(1, 12))
@settings(max_examples=1500, deadline=None)
def test_duplicated_ngram_chars_on_colliding_keys(words, n):
    assert duplicated_ngram_chars(words, n) == find_all_duplicate(words, n)


def test_top_ngram_chars_are_datatrove_counts(spacy_remembered):
    tops = 0
    for i, text in enumerate(texts()):
        words = split_into_words(text, "en")
        keys = NGramKeys(words)
        for n in (2, 3, 4):
            expected = datatrove_top_ngram_chars(words, n)
            assert keys.top_chars(n) == expected, (i, n, text[:200])
            tops += expected is not None and expected > len(" ".join(words[:n]))
    assert tops > 100  # most pages repeat some n-gram: the grouping path runs, not only the all-distinct one


# short words: tuples repeat, tie, and join into the same strings at different word boundaries
@given(st.lists(st.sampled_from(["a", "b", "ab", "ba", "c", "\ud800", "é"]), max_size=60), st.integers(1, 6))
@settings(max_examples=1500, deadline=None)
def test_top_ngram_chars_on_repeating_words(words, n):
    assert NGramKeys(words).top_chars(n) == datatrove_top_ngram_chars(words, n)


@pytest.mark.parametrize("mix", [lambda h: np.zeros_like(h), lambda h: h % np.uint64(3)], ids=["all collide", "some collide"])
def test_top_ngram_chars_when_hashes_collide(kept_vocabulary, monkeypatch, mix):
    """Word hashes squeezed into one or three values: groups mix different tuples, the answer stays datatrove's."""
    monkeypatch.setattr(gopher_repetition, "_mixed", mix)
    for i, text in enumerate(texts()[:60] + ("x y " * 40 + "z", "a b a b c c c")):
        words = kept_vocabulary.word_tokenize(text)
        keys = NGramKeys(words)
        for n in (2, 3, 4):
            assert keys.top_chars(n) == datatrove_top_ngram_chars(words, n), (i, n)


def test_duplicated_ngram_chars_when_hashes_collide(kept_vocabulary, monkeypatch):
    """Hashes that are all equal (every key collides with every other) still give datatrove's counts."""
    monkeypatch.setattr(NGramKeys, "hashes", lambda self, n: np.zeros(len(self.offsets) - n, np.uint64))
    for i, text in enumerate(texts()[:60] + ("x y " * 40 + "z",)):
        words = kept_vocabulary.word_tokenize(text)
        for n in (5, 8, 10):
            assert duplicated_ngram_chars(words, n) == find_all_duplicate(words, n), (i, n)


# --- C4 and FineWeb: the run's parameters (FineWeb's) and datatrove's defaults ---

RUN_C4 = C4QualityConfig().model_dump(exclude={"enabled"})
KEPT = "This line has enough words to be kept."
C4_CASES = (
    "Two lines. That hold five sentences! Here is the third? Yes.\nA fourth line ends it.",  # spaCy must count
    KEPT,  # one kept line, one sentence
    "\n".join([KEPT] * 6 + ["A bracket { after enough lines."]),
    "\n".join([KEPT] * 6 + ["Some lorem ipsum dolor sit amet."]),
    "\n".join([KEPT, "Enable javascript to see this page.", "Read our privacy policy first.", "x" * 1001 + " too long"] * 2),
    "[1] Cited [edit] words here.\n" * 4 + "Short.\n" + "More words [citation needed] follow here.",
)


@pytest.mark.parametrize("params", [RUN_C4, {}], ids=["run", "datatrove_defaults"])
def test_c4_decides_and_rewrites_as_datatrove(params, spacy_remembered):
    fast, reference = FastC4QualityFilter(**params), C4QualityFilter(**params)
    reasons = set()
    for i, text in enumerate(texts() + C4_CASES):
        mine, theirs = Document(text=text, id=str(i)), Document(text=text, id=str(i))
        expected = reference.filter(theirs)
        assert (fast.filter(mine), mine.text) == (expected, theirs.text), (i, text[:200])
        reasons.add(expected[1] if isinstance(expected, tuple) else "kept")
    assert {"kept", "too_few_sentences", "curly_bracket", "lorem_ipsum"} <= reasons


def fineweb_inputs() -> list[str]:
    """What the FineWeb filter sees in a run (texts as C4 rewrote them), the texts as they are, and
    lists whose newlines per whitespace piece are above the ratio, per word on either side of it."""
    c4, out = C4QualityFilter(**RUN_C4), list(texts())
    for i, text in enumerate(texts()):
        doc = Document(text=text, id=str(i))
        if c4.filter(doc) is True:
            out.append(doc.text)
    lines = [f"alphabetical{i:03d} bibliographic{i:03d} categorical{i:03d}" for i in range(40)]
    out.append("\n".join(line + "." for line in lines))  # 3 pieces but 4 words a line: kept
    out.append("\n".join(line + "." * (i % 5 == 0) for i, line in enumerate(lines)))  # 3.2 words a line: list_ratio
    out.append("\n".join(lines[:8]) + "\nIS_ALPHA IS_ALPHA IS_ALPHA.")
    return out


def test_fineweb_decides_as_datatrove(kept_vocabulary, monkeypatch, spacy_remembered):
    import curation.filters.fineweb_quality as module

    fast = FastFineWebQualityFilter(language=kept_vocabulary)
    reference, splits, reasons = FineWebQualityFilter(), [], []
    monkeypatch.setattr(module, "split_into_words", lambda text, lang: splits.append(text) or split_into_words(text, lang))
    for i, text in enumerate(fineweb_inputs()):
        expected = reference.filter(Document(text=text, id=str(i)))
        assert fast.filter(Document(text=text, id=str(i))) == expected, (i, text[:200])
        reasons.append(expected[1] if isinstance(expected, tuple) else "kept")
    assert {"kept", "list_ratio", "line_punct_ratio"} <= set(reasons)
    reached_words = reasons.count("kept") + reasons.count("list_ratio")
    assert 0 < len(splits) < reached_words / 2, (len(splits), reached_words)  # most were decided without spaCy


# --- language: datatrove's LanguageFilter with the same local model ---

LANGUAGE_CASES = (
    "",
    " \n ",
    "12345 67890",
    "Ceci est une phrase en français, assez longue pour que le modèle la reconnaisse.",
    "Das ist ein deutscher Satz. This is an English sentence about the same thing.",
    "Dit is Nederlands. This is English. Das ist Deutsch.",
    "ok",
)


def outcome(call):
    try:
        return call()
    except Exception as exc:  # datatrove's own failures must be ours too
        return type(exc).__name__


@pytest.mark.parametrize("languages, threshold", [(["en"], 0.65), (None, 0.65), (["en", "de"], 0.3)])
def test_language_decides_as_datatrove(languages, threshold):
    stage = LanguageID(languages, threshold)
    reference = LanguageFilter(languages=languages, language_threshold=threshold)
    reference.model = LocalFT176LID(bundled_lid_model(), languages)
    from_best_two = 0
    for i, text in enumerate(texts() + LANGUAGE_CASES):
        mine, theirs = Document(text=text, id=str(i)), Document(text=text, id=str(i))
        keep = outcome(lambda: stage.apply(mine))
        keep = keep is True if not isinstance(keep, str) else keep
        expected = outcome(lambda: bool(reference.filter(theirs)))
        assert (keep, mine.metadata) == (expected, theirs.metadata), (i, text[:200])
        from_best_two += stage._decide_from_best_two(Document(text=text, id=str(i))) is not None
    if threshold >= 0.5:  # a second label can only rarely score above it: fastText is asked for two labels
        assert from_best_two >= len(texts())


# --- URLs: datatrove's URLFilter, with and without block-listed domains ---


def urls() -> list[str]:
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    out = [page["url"] for page in bundled_pages()]
    with open(ROOT / "data" / "sample_corpus" / "real_crawl" / "iana.warc.gz", "rb") as f:
        out += [r.headers.get("WARC-Target-URI") for r in ArchiveIterator(f, record_types=WarcRecordType.response)]
    words = {key: _asset_lines(file)[:60] for key, file in WORD_LISTS.items()}
    out += [f"http://www.example.com/{w}-page" for w in words["banned_words"]]
    soft = words["soft_banned_words"]
    out += [f"https://{a}.example.org/{b}.html" for a, b in zip(soft, soft[1:])] + [f"https://shop.example/{a}" for a in soft]
    out += [f"https://x{s}y.example.net/a" for s in words["banned_subwords"]]
    out += ["https://spam-farm.example/p", "https://ads.tracker.net/x?id=1", "http://news.bbc.co.uk/a", "https://forums.example.org/t/1"]
    out += ["http://blocked.example/exact", "http://192.168.0.1/a", "http://[::1]/", "mailto:someone@example.com", "no scheme at all"]
    return out


@pytest.mark.parametrize("domains", [(), ("spam-farm.example", "tracker.net", "bbc.co.uk", "forums.example.org")], ids=["no_domains", "domains"])
def test_url_filter_decides_as_datatrove(domains):
    from tldextract import TLDExtract

    params = {key: _asset_lines(file) for key, file in WORD_LISTS.items()}
    params.update(extra_domains=list(domains) or None, extra_urls=["http://blocked.example/exact"], use_integrated_lists=False)
    fast, reference = FastURLFilter(**params), URLFilter(**params)
    fast.tldextractor = reference.tldextractor = TLDExtract(suffix_list_urls=(), cache_dir=None)
    reasons = set()
    for url in urls():
        expected = reference.filter(Document(text="", id=url, metadata={"url": url}))
        assert fast.filter(Document(text="", id=url, metadata={"url": url})) == expected, url
        reasons.add(expected[1] if isinstance(expected, tuple) else "kept")
    assert {"kept", "url", "hard_blacklisted", "soft_blacklisted", "blacklisted_subword"} <= reasons
    assert not domains or {"domain", "subdomain"} <= reasons


# ---- decontamination: datatrove's normalised words, and the n-grams it would hash ----------------
@functools.cache
def _eval_index():
    from curation.filters.decontamination import load_index
    from curation.filters.params import EVAL_TEXT

    return load_index([str(EVAL_TEXT / "finance.jsonl"), str(EVAL_TEXT / "general.jsonl")], 13)


def test_decontamination_finds_what_hashing_every_ngram_finds():
    """On the bundled pages, the shipped evaluation text itself, and pages with a passage of it
    planted where the run of known words is exactly 13 long, or starts after a run that matches nothing."""
    from benchmarks.decontamination import datatrove_words, every_ngram_scanned
    from curation.filters.decontamination import find_contamination, normalized_words, read_eval_texts
    from curation.filters.params import EVAL_TEXT

    index = _eval_index()
    evals = read_eval_texts(str(EVAL_TEXT / "finance.jsonl")) + read_eval_texts(str(EVAL_TEXT / "general.jsonl"))
    passage = " ".join(max(evals, key=len).split()[200:213])
    known = [w for w in sorted(index.vocabulary) if w.isalpha()][:40]  # known words in an order no text has
    planted = [f"Zqxv {passage} zqxv.", f"{passage}", f"{' '.join(known)} zqxv {passage}", f"{' '.join(known)} {passage} and more"]
    docs = [*texts(), *evals, *planted]
    theirs = [datatrove_words(text) for text in docs]
    assert [normalized_words(text) for text in docs] == theirs
    found = [find_contamination(text, index) for text in docs]
    assert found == [every_ngram_scanned(words, index) for words in theirs]
    assert all(hit is not None for hit in found[-len(planted):])
    assert sum(hit is not None for hit in found) > len(evals) // 2


_MARKED = ["a", "Z", "é", "e\u0301", "\u0301", "\u0327\u0301", "ǅ", "İ", "ß", "Ⅻ", "١٢", "3.5", "7,2", "٫", "ﬁ", "\U0001d167",
           "\U0001d15e", "한", "ᄀ\u1161", "ァ\u3099", "!", "...", "¿", "—", "«", "\u037e", "\u0387", " ", "\n", "\t", "\u00a0",
           "\u2000", "\u2028", "\u3000", "\x1c", "\u0085", "\ufeff", "\u200b", "x" * 5]


@given(st.lists(st.sampled_from(_MARKED), max_size=40) | st.text(max_size=60))
@settings(max_examples=1500, deadline=None)
def test_decontamination_words_on_marks_numbers_punctuation_and_whitespace(pieces):
    from benchmarks.decontamination import datatrove_words
    from curation.filters.decontamination import normalized_words

    text = pieces if isinstance(pieces, str) else "".join(pieces)
    assert normalized_words(text) == datatrove_words(text)


def test_decomposing_keeps_whitespace_apart_from_the_rest():
    """Why ``normalized_words`` may skip datatrove's whitespace step: ``re``'s ``\\s`` is ``str.isspace``,
    and every whitespace character decomposes to whitespace only and has no combining class."""
    import re
    import unicodedata

    space = re.compile(r"\s")
    for c in map(chr, range(0x110000)):
        assert bool(space.fullmatch(c)) == c.isspace(), hex(ord(c))
        if c.isspace():
            assert all(d.isspace() for d in unicodedata.normalize("NFD", c)) and unicodedata.combining(c) == 0, hex(ord(c))
            assert unicodedata.category(c) != "Mn"
