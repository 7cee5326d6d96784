"""Exact token counts of raw pages: ours (``tokenizer.counting.WordCountCache``) against encoding each
whole page with sentencepiece, and against the same word cache learning a page's new words in one
list call (the design before f818b7b), on the same pages, sides alternating, counts compared.

    python -m benchmarks.token_counting [--pages 4000] [--corpus ~/.cache/curation-scale-corpus/0.1]

The pages are the first ``--pages`` HTML responses of the scale corpus (the funnel counts every raw
record's tokens); the model is trained as a run trains its tokenizer, on their resiliparse text.
Each round starts every side with an empty cache, as a fresh worker does. CPU is process time, so
the threads sentencepiece starts for a list call are counted too.
"""

from __future__ import annotations

import glob
import time
from pathlib import Path

from benchmarks.common import machine, page_sample_parser, versions


def raw_pages(corpus: Path, limit: int) -> list[str]:
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    out = []
    for path in sorted(glob.glob(str(corpus / "*.warc.gz"))):
        with open(path, "rb") as f:
            for record in ArchiveIterator(f, record_types=WarcRecordType.response):
                out.append(record.reader.read().split(b"\r\n\r\n", 1)[-1].decode("utf-8", errors="replace"))
                if len(out) == limit:
                    return out
    return out


def main() -> None:
    import sentencepiece as spm
    from resiliparse.extract.html2text import extract_plain_text

    from tokenizer.counting import WordCountCache, counts_by_word
    from tokenizer.train import SentencePieceSettings, train_sentencepiece

    args = page_sample_parser(__doc__.splitlines()[0]).parse_args()
    pages = raw_pages(args.corpus, args.pages)
    model = train_sentencepiece([extract_plain_text(p, main_content=True) for p in pages[:2000]], SentencePieceSettings(vocab_size=8192))
    assert counts_by_word(model)

    class ListCallCache(WordCountCache):
        """The word cache as it was: a page's new words encoded in one list call (from 32 on)."""

        def _count_learning(self, words: list[str]) -> int:
            new = [w for w in dict.fromkeys(words) if w not in self.words]
            if len(self.words) + len(new) > self.max_words:
                self.words = {w: self.words[w] for w in words if w in self.words}
            encoded = [self.processor.encode(w) for w in new] if len(new) < 32 else self.processor.encode(new, num_threads=1)
            self.words.update(zip(new, map(len, encoded)))
            return sum(map(self.words.__getitem__, words))

    def whole_page(processor):
        return lambda text: len(processor.encode(text))

    sides = {"sentencepiece, whole page": whole_page, "word cache, list calls (before)": ListCallCache, "ours: word cache, one call a word": WordCountCache}
    cpu = {name: [] for name in sides}
    counts = {}
    for _ in range(args.rounds):
        for name, make in sides.items():
            count = make(spm.SentencePieceProcessor(model_proto=model))
            start = time.process_time()
            counts[name] = [count(p) for p in pages]
            cpu[name].append(time.process_time() - start)
    assert len({tuple(c) for c in counts.values()}) == 1, "the sides counted differently"
    ours = min(cpu["ours: word cache, one call a word"])
    print(f"python -m benchmarks.token_counting --pages {len(pages)} ({args.corpus}, raw HTML, {sum(map(len, pages)) / len(pages):,.0f} characters a page)")
    print(f"machine: {machine()}")
    print(f"versions: {versions('sentencepiece')}")
    print(f"every side counted the same {sum(counts['ours: word cache, one call a word']):,} tokens; CPU per page, best of {args.rounds} rounds, each from an empty cache")
    for name, times in cpu.items():
        best = min(times)
        print(f"  {name:36s} {1000 * best / len(pages):7.3f} ms   ratio to ours {best / ours:5.2f}x")


if __name__ == "__main__":
    main()
