"""Gopher repetition's n-gram counts on real pages: ours against datatrove's, the same counts.

    python -m benchmarks.gopher_repetition [--pages 4000] [--corpus ~/.cache/curation-scale-corpus/0.1]

The pages are the first ``--pages`` responses of the scale corpus, their main text extracted with
resiliparse, and of those the ones fastText calls English (the pages that reach the filter in a
run). Each page is split into words once, before timing, by the word tokenizer the filter uses.
For every n of the default config, sides alternating, best of ``--rounds``, every (page, n)
count compared with datatrove's:

- the most common n-gram's characters x count (n = 2, 3, 4): datatrove's ``get_n_grams`` and
  ``find_top_duplicate`` (a joined string per position, counted in a Python loop); ``Counter`` over
  word tuples (``top_ngram_chars``: our code before, now the fallback on a hash collision); ours,
  ``NGramKeys.top_chars`` (tuple hashes grouped by sorting, the largest group checked);
- the characters in duplicated n-grams (n = 5..10): datatrove's ``find_all_duplicate`` (a joined
  string per position, scanned); the keys sliced out of one joined string
  (``repeated_ngram_chars``: before, now the fallback); ours, ``NGramKeys.repeated_chars`` (the keys
  hashed from one prefix sum, the scan over candidate positions).

Then the whole filter, datatrove's ``GopherRepetitionFilter`` against ours, over the same pages with
the word splits warm on both sides: decisions compared page by page.
"""

from __future__ import annotations

import time
from itertools import accumulate
from pathlib import Path

from benchmarks.common import machine, page_sample_parser, report, versions
from benchmarks.filter_cpu import pages


def english_words(corpus: Path, limit: int, tokenizer=None) -> list[tuple[str, list[str] | None]]:
    """The English pages among the first ``limit`` (fastText, as the language stage keeps them), each
    with its words split by ``tokenizer`` (None: not split)."""
    from datatrove.data import Document
    from datatrove.utils.text import split_into_words

    from curation.filters.language import LanguageID

    lid = LanguageID(languages=["en"])
    out = []
    for i, (url, text) in enumerate(pages(corpus, limit)):
        if text and lid.apply(Document(text=text, id=str(i), metadata={"url": url})) is True:
            out.append((text, split_into_words(text, tokenizer) if tokenizer is not None else None))
    return out


def best_of(sides: dict, docs: list[tuple[str, list[str]]], rounds: int) -> tuple[dict[str, float], dict[str, list]]:
    """Each side's answers on every (text, words), and its least CPU over ``rounds``, sides alternating."""
    best, answers = dict.fromkeys(sides, float("inf")), {}
    for _ in range(rounds):
        for name, side in sides.items():
            start = time.process_time()
            answers[name] = [side(text, words) for text, words in docs]
            best[name] = min(best[name], time.process_time() - start)
    return best, answers


def ratio_lines(best: dict[str, float], pages: int) -> list[str]:
    """CPU per page of each side, and the first side's (datatrove's) over it."""
    base = next(iter(best.values()))
    return [f"  {name:<44}{1e3 * t / pages:>8.3f} ms   datatrove / this {base / t:5.2f}x" for name, t in best.items()]


def main() -> None:
    from datatrove.data import Document
    from datatrove.pipeline.filters import GopherRepetitionFilter
    from datatrove.pipeline.filters.gopher_repetition_filter import find_all_duplicate, find_top_duplicate, get_n_grams

    from curation.filters.gopher_repetition import FastGopherRepetitionFilter, NGramKeys, repeated_ngram_chars, top_ngram_chars
    from curation.filters.params import GopherRepetitionConfig
    from curation.filters.words import shared_word_tokenizer

    args = page_sample_parser(__doc__.splitlines()[0], "benchmarks/results/gopher_repetition-2core.txt").parse_args()

    params = GopherRepetitionConfig().model_dump(exclude={"enabled"})
    top_ns, dup_ns = [n for n, _ in params["top_n_grams"]], [n for n, _ in params["dup_n_grams"]]
    tokenizer = shared_word_tokenizer("en")
    docs = english_words(args.corpus, args.pages, tokenizer)
    if not docs:
        raise SystemExit(f"no English pages in the first {args.pages} of {args.corpus}")

    def datatrove_top(text, words):
        return [find_top_duplicate(grams) if (grams := get_n_grams(words, n)) else None for n in top_ns]

    def datatrove_dup(text, words):
        return [find_all_duplicate(words, n) for n in dup_ns]

    def sliced_dup(text, words):
        joined, offsets = "".join(words), [0, *accumulate(map(len, words))]
        return [repeated_ngram_chars(joined, offsets, n) for n in dup_ns]

    def counter_top(text, words):
        return [top_ngram_chars(words, n) for n in top_ns]

    def ours_top(text, words):
        keys = NGramKeys(words)
        return [keys.top_chars(n) for n in top_ns]

    def ours_dup(text, words):
        keys = NGramKeys(words)
        return [keys.repeated_chars(n) for n in dup_ns]

    sections = {
        f"most common n-gram, n = {top_ns}": {
            "datatrove get_n_grams + find_top_duplicate": datatrove_top,
            "Counter over word tuples (before)": counter_top,
            "ours: NGramKeys.top_chars": ours_top,
        },
        f"duplicated n-grams, n = {dup_ns}": {
            "datatrove find_all_duplicate": datatrove_dup,
            "keys sliced (before)": sliced_dup,
            "ours: NGramKeys.repeated_chars": ours_dup,
        },
    }
    lines = [
        f"python -m benchmarks.gopher_repetition --pages {args.pages} ({args.corpus}: {len(docs)} English pages, "
        f"{sum(len(w) for _, w in docs) / len(docs):,.0f} words a page)",
        f"machine: {machine()}",
        f"versions: {versions('datatrove', 'numpy', 'spacy')}",
    ]
    for title, sides in sections.items():
        best, answers = best_of(sides, docs, args.rounds)
        reference = next(iter(answers.values()))
        for name, got in answers.items():
            wrong = sum(a != b for page_a, page_b in zip(got, reference) for a, b in zip(page_a, page_b))
            if wrong:
                raise SystemExit(f"{title}, {name}: {wrong} (page, n) counts differ from datatrove's")
        lines.append(f"{title}: the same count on all {sum(map(len, reference)):,} (page, n) pairs; CPU per page, best of {args.rounds} rounds")
        lines += ratio_lines(best, len(docs))

    filters = {"datatrove GopherRepetitionFilter": GopherRepetitionFilter(**params, language=tokenizer),
               "ours: FastGopherRepetitionFilter": FastGopherRepetitionFilter(**params, language=tokenizer)}
    best, verdicts = best_of({name: lambda text, words, block=block: block.filter(Document(text=text, id="page"))
                              for name, block in filters.items()}, docs, args.rounds)
    first, second = verdicts.values()
    differ = sum(a != b for a, b in zip(first, second))
    if differ:
        raise SystemExit(f"the filters decided {differ} of {len(docs)} pages differently")
    lines.append(f"whole filter (paragraphs, lines, top and duplicated n-grams; both split words with the same warm tokenizer): "
                 f"the same decision on all {len(docs):,} pages")
    lines += ratio_lines(best, len(docs))
    report("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
