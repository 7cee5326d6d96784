"""The decontaminate stage's search on real pages: ours against datatrove's normalisation with every
n-gram hashed, the same answers.

    python -m benchmarks.decontamination [--pages 4000] [--corpus ~/.cache/curation-scale-corpus/0.1]

The pages are the first ``--pages`` responses of the scale corpus, their main text extracted with
resiliparse, and of those the ones fastText calls English (the pages that reach the stage in a
default run: it follows the language stage). Every 50th page gets 13 words of the shipped
evaluation text planted in its middle, so the search also ends early on some. The index is the
shipped one (``data/eval``, n = 13). Sides alternating, best of ``--rounds``:

- the words: datatrove's ``simplify_text`` then ``str.split`` (the stage before), against
  ``normalized_words``; the same list on every page;
- the search: datatrove's words and every n-gram joined and hashed, as datatrove's
  ``NGramsDecontFilter`` scans (the stage before), against ``find_contamination``; the same
  (evaluation set, n-gram) or None on every page.
"""

from __future__ import annotations

from benchmarks.common import machine, page_sample_parser, report, versions
from benchmarks.gopher_repetition import best_of, english_words, ratio_lines


def planted(docs: list[str], passage: str, every: int = 50) -> list[str]:
    out = []
    for i, text in enumerate(docs):
        if i % every == 0:
            middle = len(text) // 2
            text = f"{text[:middle]}\n{passage}\n{text[middle:]}"
        out.append(text)
    return out


def datatrove_words(text: str) -> list[str]:
    """The stage's words as before: datatrove's ``simplify_text``, split on whitespace."""
    from datatrove.utils.text import simplify_text

    from curation.filters.decontamination import NORMALISATION

    return simplify_text(text, NORMALISATION).split()


def every_ngram_scanned(words: list[str], index) -> tuple[str, str] | None:
    """The first indexed n-gram of ``words`` as datatrove's ``NGramsDecontFilter`` finds it: every n-gram hashed."""
    from xxhash import xxh64_intdigest

    from curation.filters.decontamination import ngrams

    for gram in ngrams(words, index.n):
        if (owner := index.owners.get(xxh64_intdigest(gram))) is not None:
            return owner, gram
    return None


def main() -> None:
    from curation.filters.decontamination import find_contamination, load_index, normalized_words, read_eval_texts
    from curation.filters.params import EVAL_TEXT

    args = page_sample_parser(__doc__.splitlines()[0], "benchmarks/results/decontamination-2core.txt").parse_args()

    eval_files = [str(EVAL_TEXT / "finance.jsonl"), str(EVAL_TEXT / "general.jsonl")]
    index = load_index(eval_files, 13)
    passage = " ".join(max(read_eval_texts(eval_files[0]), key=len).split()[100:113])
    texts = planted([text for text, _ in english_words(args.corpus, args.pages)], passage)
    if not texts:
        raise SystemExit(f"no English pages in the first {args.pages} of {args.corpus}")
    docs = [(text, None) for text in texts]

    sections = {
        "normalised words": {"datatrove simplify_text + split (before)": lambda text, _: datatrove_words(text),
                             "ours: normalized_words": lambda text, _: normalized_words(text)},
        f"search for a shared {index.n}-gram ({len(index):,} in the index)": {
            "datatrove words, all n-grams hashed (before)": lambda text, _: every_ngram_scanned(datatrove_words(text), index),
            "ours: find_contamination": lambda text, _: find_contamination(text, index)},
    }
    lines = [
        f"python -m benchmarks.decontamination --pages {args.pages} ({args.corpus}: {len(texts)} English pages, "
        f"{sum(map(len, texts)) / len(texts):,.0f} characters a page, a passage of the evaluation text planted in every 50th)",
        f"machine: {machine()}",
        f"versions: {versions('datatrove', 'xxhash')}",
    ]
    for title, sides in sections.items():
        best, answers = best_of(sides, docs, args.rounds)
        reference = next(iter(answers.values()))
        for name, got in answers.items():
            if (wrong := sum(a != b for a, b in zip(got, reference))):
                raise SystemExit(f"{title}, {name}: {wrong} pages differ from datatrove's")
        found = sum(a is not None for a in reference) if "search" in title else None
        lines.append(f"{title}: the same answer on all {len(texts):,} pages" + (f" ({found} contaminated)" if found is not None else "")
                     + f"; CPU per page, best of {args.rounds} rounds")
        lines += ratio_lines(best, len(texts))
    report("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
