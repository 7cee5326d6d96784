"""The ``decontaminate`` stage: documents sharing a long word n-gram with the evaluation text go.

A model scored on text it was trained on measures memory, not curation. As GPT-3 (13-grams) and
datatrove's ``NGramsDecontFilter`` do, both sides are normalised alike (datatrove's
``simplify_text``: lower case, punctuation to spaces, diacritics folded, numbers to ``0``,
whitespace collapsed), split into words, and every word n-gram of the evaluation text is hashed
(xxhash64) into one set; a document is contaminated when any of its n-grams is in the set. A set
of Python ints is right at this size (tens of thousands of n-grams, a few MB); an evaluation text
of gigabytes would want datatrove's on-disk sorted index instead.

An evaluation text or document shorter than ``n`` words has no n-gram and matches nothing. The
first match decides; the rejected document records which evaluation set and which n-gram.

The words are datatrove's, computed ~2.5x faster (``normalized_words``): datatrove strips
combining marks one character at a time in a Python generator, the stage's largest cost; here a
regular expression removes them, only from text that is not ASCII. Its whitespace step is left out
because only the words are used: ``str.split`` splits on the same characters, and no character's
decomposition turns whitespace into non-whitespace or back (``tests/test_fast_filters.py``
checks every code point, and the words against datatrove's on real and generated text). Only
n-grams whose words all occur in indexed n-grams can match, so a document's words are first
checked against that vocabulary and only runs of ``n`` known words are joined and hashed (most
pages have none): the answer is the same, barring 64-bit hash collisions, which it can only avoid.

One departure from datatrove: n-grams of the evaluation text in which fewer than half the words
hold a letter are not indexed. Normalisation turns every number into ``0``, so a table of figures
or a Fibonacci example in the evaluation text becomes ``0 0 0 ... 0``, which matches any page with
a run of numbers (on the bundled corpus: a Debian Handbook table of counters, a GnuCash
depreciation table, LibreOffice date examples). Runs of numbers are not leaked prose.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import fsspec
from datatrove.data import Document
from datatrove.utils.text import NUMBERS_PATTERN, PUNCTUATION, TextNormConfig, simplify_text
from xxhash import xxh64_intdigest

from curation.core.stage import Stage, Verdict

NORMALISATION = TextNormConfig()  # datatrove's defaults, as its decontamination uses
# the steps ``normalized_words`` takes; another datatrove default falls back to ``simplify_text``
_FAST_STEPS = {"lowercase": True, "norm_whitespace": True, "remove_punctuation": True, "norm_unicode_diacritics": True,
               "norm_numbers": True, "norm_weekdays": False, "norm_monthnames": False}
_FAST = dataclasses.asdict(NORMALISATION) == _FAST_STEPS


def _char_class(code_points: list[int]) -> str:
    """A regex character class body for sorted ``code_points``, as ranges."""
    ranges: list[list[int]] = []
    for c in code_points:
        if ranges and ranges[-1][1] == c - 1:
            ranges[-1][1] = c
        else:
            ranges.append([c, c])
    return "".join(re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in ranges)


@functools.cache
def _punctuation() -> re.Pattern:
    """datatrove's punctuation, a run at a time (one space or several: the same words)."""
    return re.compile(f"[{_char_class(sorted(set(map(ord, PUNCTUATION))))}]+")


@functools.cache
def _combining_marks() -> re.Pattern:
    """The characters datatrove drops after NFD: category Mn in this Python's Unicode database.

    Python's ``re`` tests a class with characters past U+FFFF range by range (~350 here, slow on
    every character); the ones below it make a bitmap, and the rest are tried only on such a
    character.
    """
    marks = [c for c in range(0x110000) if unicodedata.category(chr(c)) == "Mn"]
    bmp, astral = [c for c in marks if c < 0x10000], [c for c in marks if c >= 0x10000]
    return re.compile(f"[{_char_class(bmp)}]+|(?=[\U00010000-\U0010ffff])[{_char_class(astral)}]+")


def normalized_words(text: str) -> list[str]:
    """The words of ``text`` after datatrove's normalisation (punctuation is already gone, so
    splitting on whitespace is its word tokenizer's answer for the languages that use spaces):
    ``simplify_text(text, NORMALISATION).split()``, the same list (see the module doc)."""
    if not _FAST:
        return simplify_text(text, NORMALISATION).split()
    text = unicodedata.normalize("NFD", _punctuation().sub(" ", NUMBERS_PATTERN.sub("0", text.lower())))
    if not text.isascii():
        text = _combining_marks().sub("", text)
    return text.split()


def ngrams(words: list[str], n: int) -> Iterator[str]:
    return (" ".join(words[i : i + n]) for i in range(len(words) - n + 1))


def indexed_ngrams(text: str, n: int) -> Iterator[list[str]]:
    """The n-grams of an evaluation text that are mostly words (see the module doc), as word lists."""
    words = normalized_words(text)
    lettered = [any(c.isalpha() for c in w) for w in words]
    for i in range(len(words) - n + 1):
        if 2 * sum(lettered[i : i + n]) >= n:
            yield words[i : i + n]


@dataclass(frozen=True)
class NGramIndex:
    """Hashed word n-grams of the evaluation text, each mapped to the evaluation set it came from."""

    n: int
    owners: Mapping[int, str]
    vocabulary: frozenset[str]  # every word of an indexed n-gram

    def __len__(self) -> int:
        return len(self.owners)


def build_index(eval_sets: Mapping[str, Iterable[str]], n: int = 13) -> NGramIndex:
    """The index of every word n-gram of every text of each named evaluation set.

    An n-gram that two sets share is credited to the first set in name order, so the index is the
    same whatever order the sets arrive in.
    """
    if n < 1:
        raise ValueError(f"n-gram length must be at least 1, got {n}")
    owners: dict[int, str] = {}
    vocabulary: set[str] = set()
    for name in sorted(eval_sets):
        for text in eval_sets[name]:
            for gram in indexed_ngrams(text, n):
                owners.setdefault(xxh64_intdigest(" ".join(gram)), name)
                vocabulary.update(gram)
    return NGramIndex(n, owners, frozenset(vocabulary))


def find_contamination(text: str, index: NGramIndex) -> tuple[str, str] | None:
    """(evaluation set, the shared n-gram as normalised) for the first n-gram of ``text`` in the index, else None."""
    words, n = normalized_words(text), index.n
    known = bytes(map(index.vocabulary.__contains__, words))  # 1 where a word occurs in the index
    run = b"\x01" * n
    start = known.find(run)
    while start >= 0:  # the runs of n known words or more, in order: only their n-grams may match
        end = known.find(b"\x00", start)
        end = len(known) if end < 0 else end
        for gram in ngrams(words[start:end], n):
            owner = index.owners.get(xxh64_intdigest(gram))
            if owner is not None:
                return owner, gram
        start = known.find(run, end)
    return None


def eval_set_name(path: str) -> str:
    """An evaluation file's set name: its file name without extensions (``data/eval/finance.jsonl`` -> ``finance``)."""
    return Path(path).name.split(".")[0]


def read_eval_texts(path: str, text_field: str = "text") -> list[str]:
    """The texts of a JSON-lines evaluation file (local or any fsspec URL; ``.gz`` is decompressed)."""
    with fsspec.open(path, "rt", encoding="utf-8", compression="infer") as f:
        return [json.loads(line)[text_field] for line in f if line.strip()]


def load_index(eval_paths: Iterable[str], n: int) -> NGramIndex:
    return build_index({eval_set_name(p): read_eval_texts(p) for p in eval_paths}, n)


@functools.lru_cache(maxsize=4)
def _index_of(files: tuple[tuple[str, int | None, int | None], ...], n: int) -> NGramIndex:
    return load_index([path for path, _, _ in files], n)


def shared_index(eval_paths: Iterable[str], n: int) -> NGramIndex:
    """``load_index``, built once per process while the files stay the same: a worker curates many
    shards, and building the index (about half a second) would otherwise repeat for each."""

    def stamp(path: str) -> tuple[str, int | None, int | None]:
        if "://" in path:
            return path, None, None
        st = os.stat(path)
        return path, st.st_mtime_ns, st.st_size

    return _index_of(tuple(stamp(p) for p in eval_paths), n)


class Decontaminate(Stage):
    """Rejects documents sharing a word ``ngram``-gram with the evaluation files, with reason
    ``contaminated:<set>``; metadata ``contamination`` holds the set and the shared n-gram."""

    name = "decontaminate"

    def __init__(self, eval_paths: list[str], ngram: int = 13):
        self.eval_paths = list(eval_paths)
        self.ngram = ngram
        self.index: NGramIndex | None = None

    def open(self) -> None:
        if self.index is None:
            self.index = shared_index(self.eval_paths, self.ngram)

    def apply(self, doc: Document) -> Verdict:
        if self.index is None:  # used without ``with``: a test on a list
            self.open()
        hit = find_contamination(doc.text, self.index)
        if hit is None:
            return True
        eval_set, gram = hit
        doc.metadata["contamination"] = {"eval_set": eval_set, "ngram": gram, "n": self.ngram}
        return False, f"contaminated:{eval_set}"
