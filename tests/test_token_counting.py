"""Counting tokens word by word (``tokenizer.counting``) gives exactly what encoding gives."""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest
import sentencepiece as spm
from fastwarc.warc import ArchiveIterator, WarcRecordType
from resiliparse.extract.html2text import extract_plain_text

from tests.conftest import CORPUS
from tokenizer.counting import _WORD, WordCountCache, counts_by_word, token_counter, word_encoder
from tokenizer.train import SentencePieceSettings, train_sentencepiece


@pytest.fixture(scope="module")
def pages() -> list[str]:
    """Every HTML record of the bundled WARCs, decoded as the funnel measures raw records."""
    out = []
    for warc in sorted(Path(CORPUS).rglob("*.warc.gz")):
        with open(warc, "rb") as f:
            out += [r.reader.read().decode("utf-8", errors="replace") for r in ArchiveIterator(f, record_types=WarcRecordType.response)]
    assert len(out) > 500
    return out


@pytest.fixture(scope="module")
def texts(pages) -> list[str]:
    return [extract_plain_text(p, main_content=True) for p in pages]


@pytest.fixture(scope="module")
def run_model(texts) -> bytes:
    """A model trained as a run trains its tokenizer."""
    return train_sentencepiece(texts[:300], SentencePieceSettings(vocab_size=2000))


def _processor(model: bytes) -> spm.SentencePieceProcessor:
    return spm.SentencePieceProcessor(model_proto=model)


def _adversarial(n: int) -> list[str]:
    """Short strings of the pieces where a split by words could go wrong: runs of spaces, other
    whitespace, digits, combining marks, characters only byte fallback can encode."""
    rng = random.Random(0)
    alphabet = [" ", "  ", "   ", "\n", "\t", "\r", "a", "b", "the", " the", "ing", "1", "22", "\u3000", "\xa0", "\u200b",
                "é", "e\u0301", "😀", "\U0001d400", "<", ">", '="', "\x00", "&nbsp;"]
    return [''.join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) for _ in range(n)]


def test_the_runs_tokenizer_counts_by_word(run_model):
    assert counts_by_word(run_model)


def test_counts_equal_encoding_on_every_bundled_page_text_and_edge_case(run_model, pages, texts):
    processor = _processor(run_model)
    count = WordCountCache(processor)
    for text in [*pages, *texts, *_adversarial(5000)]:
        assert count(text) == len(processor.encode(text)), repr(text[:200])
    assert len(count.words) > 1000  # it did cache words, not whole texts


def test_new_words_take_the_bindings_own_call_only_where_it_answers_as_encode(run_model, pages):
    processor = _processor(run_model)
    encode = word_encoder(processor)
    assert encode.__name__ == "encode_direct"  # the pinned sentencepiece: ~2.9 µs a word instead of ~3.5-4.3
    words = list(dict.fromkeys(w for page in pages[:40] for w in _WORD.findall(page)))
    assert len(words) > 5000 and [encode(w) for w in words] == [processor.encode(w) for w in words]
    # a processor set to sample segmentations is not what the direct call reproduces: its own encode
    sampling = spm.SentencePieceProcessor(model_proto=run_model, enable_sampling=True, alpha=0.1, nbest_size=-1)
    assert word_encoder(sampling) == sampling.encode


def test_a_full_cache_starts_over_and_stays_exact(run_model, pages):
    processor = _processor(run_model)
    count = WordCountCache(processor, max_words=200)
    largest = 0
    for page in pages[:50]:
        assert count(page) == len(processor.encode(page))
        largest = max(largest, len(set(_WORD.findall(page))))
        assert len(count.words) <= 200 + largest  # the bound, plus at most one text's words


def test_other_models_are_counted_by_encoding_the_whole_text(texts):
    """A model that normalises (NFKC, a dummy prefix, collapsed spaces), like many a user brings
    as ``tokenizer.model_path``, cannot be counted by words: the counter encodes instead."""
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(t for t in texts[:300] if t.strip()), model_writer=model, vocab_size=1000,
                                   model_type="bpe", hard_vocab_limit=False, minloglevel=2)
    assert not counts_by_word(model.getvalue())
    processor = _processor(model.getvalue())
    count = token_counter(model.getvalue())
    assert not isinstance(count, WordCountCache)
    for text in [*texts[:100], *_adversarial(500)]:
        assert count(text) == len(processor.encode(text))
