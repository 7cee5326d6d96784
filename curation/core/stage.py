"""The stage contract and the accounting that every stage gets for free.

A stage answers one question per document: keep it (``True``) or reject it (``False`` or
``(False, reason)``), the same contract as datatrove's ``BaseFilter.filter``. A stage may rewrite
``doc.text`` or add metadata while doing so. ``run_stage`` streams documents through a stage,
counts documents, bytes and tokens in/kept/rejected/out per domain, and hands every rejected
document, with its reason and the text it entered with, to a sink: nothing disappears silently.

Two variations keep the same accounting: a ``ShardStage`` decides over all documents of a shard at
once (keep the top fraction by a score), and a stage may change ``metadata["domain"]`` (the domain
classifier), which ``run_stage`` records as a reassignment. A stage reports extra counts (PII
redactions by type) by adding to ``self.counters``; ``run_stage`` moves them into the stats.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from itertools import islice

from datatrove.data import Document

from curation.core.document import COUNTED_KEY, counted_tokens
from curation.core.stats import StageStats

logger = logging.getLogger(__name__)

Verdict = bool | tuple[bool, str]
RejectSink = Callable[[Document, str, "bytes | None"], None]

# Transient metadata (never written to disk): the undecoded record bytes, and a read error.
RAW_KEY = "_raw"
READ_ERROR_KEY = "_read_error"
MEASURE_KEY = "_measure"
_UNCOUNTED = object()  # in place of the decoded record, when markup is not counted


class Stage(ABC):
    """One unit of curation. Subclasses set ``name`` and implement ``apply``."""

    name: str = "stage"
    counters: Counter

    def count(self, name: str, n: int = 1) -> None:
        """Add to a named counter of the document being processed (shown in the funnel)."""
        if "counters" not in self.__dict__:
            self.counters = Counter()
        self.counters[name] += n

    def open(self) -> None:
        """Acquire per-worker resources (models, subprocesses); called once before the first document."""

    def close(self) -> None:
        """Release what ``open`` acquired."""

    def __enter__(self) -> Stage:
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # >1: ``run_stage`` hands the stage the next this-many documents (``prepare``) before their ``apply`` calls
    prepare_batch: int = 0

    @abstractmethod
    def apply(self, doc: Document) -> Verdict:
        """Keep (True) or reject (False, or (False, reason)) one document; may rewrite it."""

    def prepare(self, docs: list[Document]) -> None:
        """Work ``apply`` can do for several documents at once, done ahead for the next ``docs`` (a stage
        whose every document costs a round trip to another process). It must not change the documents,
        and ``apply`` must give each the same verdict and text whether or not it was called."""

    def copies(self, doc: Document) -> int:
        """How many times a kept document goes on: 1, except where mixing repeats a domain's documents."""
        return 1


class ShardStage(Stage):
    """A stage whose verdicts depend on the whole shard (e.g. keep the top fraction by score).

    ``run_stage`` collects the shard's documents, measures them as they enter, and asks
    ``apply_shard`` for one verdict per document, in order. This buffers one shard in memory,
    which the per-shard task already bounds. (Its ``counters``, if any, are credited to the domain
    of the shard's first document: per-document counts belong in per-document stages.)
    """

    @abstractmethod
    def apply_shard(self, docs: list[Document]) -> list[Verdict]:
        """One verdict per document of the shard; may rewrite documents like ``apply``."""

    def apply(self, doc: Document) -> Verdict:
        return self.apply_shard([doc])[0]


class TextMeasure:
    """Measures a document as (utf-8 bytes, tokens).

    Counting tokens is the expensive part, so the result is cached on the document and reused
    until a stage replaces ``doc.text`` (checked by identity, which is O(1)). Metadata keys that
    start with an underscore are transient and never written to disk.

    ``count_markup=False`` leaves an HTML record's tokens uncounted (0) until a stage changes its
    text (extraction): as it arrived and as decoded. Text records (``content_type`` "text") are
    counted either way: their record is the document's text.
    """

    def __init__(self, count_tokens: Callable[[str], int] | None = None, count_markup: bool = True):
        self.count_tokens = count_tokens
        self.count_markup = count_markup
        self.time_s = 0.0  # CPU spent counting tokens: the funnel's own cost, reported beside the stages'

    def __call__(self, doc: Document) -> tuple[int, int]:
        raw = doc.metadata.get(RAW_KEY)
        cached = doc.metadata.get(MEASURE_KEY)
        if raw is not None:  # not decoded yet: measure the record as it arrived
            if cached is None or cached[0] is not raw:
                if self.count_markup or doc.metadata.get("content_type") == "text":
                    as_text = raw.decode("utf-8", errors="replace")
                    cached = (raw, (len(raw), self._tokens(as_text)), as_text)
                else:
                    cached = (raw, (len(raw), 0), _UNCOUNTED)
                doc.metadata[MEASURE_KEY] = cached
            return cached[1]
        if cached is not None and cached[0] is doc.text:
            return cached[1]
        tokens = None
        if cached is not None and len(cached) == 3 and (cached[2] is _UNCOUNTED or cached[2] == doc.text):
            # decoding as UTF-8 gave the text the record was counted as (most pages): the same tokens,
            # so the page is not encoded a second time (equality is a memcmp; encoding is not); or
            # the record is markup left uncounted, and so is its decoded text
            tokens = cached[1][1]
        elif self.count_tokens is not None:
            tokens = counted_tokens(doc)  # counted by the phase that wrote the document, if one did
        text_bytes = len(doc.text.encode("utf-8", errors="surrogatepass"))
        if tokens is None:
            tokens = self._tokens(doc.text)
            if self.count_tokens is not None:
                doc.metadata[COUNTED_KEY] = (doc.text, tokens)
        size = (text_bytes, tokens)
        doc.metadata[MEASURE_KEY] = (doc.text, size)
        return size

    def _tokens(self, text: str) -> int:
        if self.count_tokens is None or not text:
            return 0
        start = time.thread_time()  # CPU, not wall: a busy machine must not make counting look costly
        tokens = self.count_tokens(text)
        self.time_s += time.thread_time() - start
        return tokens


def _as_verdict(result: Verdict, stage: Stage) -> tuple[bool, str]:
    if isinstance(result, tuple):
        keep, reason = result
        return bool(keep), reason or stage.name
    return bool(result), stage.name


def _verdicts(stage: Stage, docs: Iterable[Document], stats: StageStats, measure: TextMeasure):
    """(document, domain, size, text as it entered, verdict) per document, timing the stage itself."""
    warned: set[str] = set()

    def failed(exc: Exception, doc_id: str) -> tuple[bool, str]:
        reason = f"error:{type(exc).__name__}"
        if reason not in warned:
            warned.add(reason)
            logger.warning("stage %s failed on %s (%s: %s); rejecting it", stage.name, doc_id, type(exc).__name__, exc)
        return False, reason

    if isinstance(stage, ShardStage):
        entered = [(doc, doc.metadata["domain"], measure(doc), doc.text) for doc in docs]
        start = time.perf_counter()
        try:
            verdicts = [_as_verdict(v, stage) for v in stage.apply_shard([e[0] for e in entered])]
            assert len(verdicts) == len(entered), f"{stage.name}: {len(verdicts)} verdicts for {len(entered)} documents"
        except Exception as exc:  # the whole shard's decision failed: reject it all, by name
            verdicts = [failed(exc, entered[0][0].id if entered else "an empty shard")] * len(entered)
        stats.wall_time_s += time.perf_counter() - start
        yield from (e + (v,) for e, v in zip(entered, verdicts))
        return
    if stage.prepare_batch > 1:
        docs = _prepared(stage, docs, stats)
    for doc in docs:
        domain, size_in, text_in = doc.metadata["domain"], measure(doc), doc.text
        start = time.perf_counter()
        try:
            verdict = _as_verdict(stage.apply(doc), stage)
        except Exception as exc:  # one bad document must not take the shard down with it
            verdict = failed(exc, doc.id)
        stats.wall_time_s += time.perf_counter() - start
        yield doc, domain, size_in, text_in, verdict


def _prepared(stage: Stage, docs: Iterable[Document], stats: StageStats) -> Iterator[Document]:
    """``docs`` as they were, each batch of ``stage.prepare_batch`` handed to ``stage.prepare`` first (timed as the stage's)."""
    docs = iter(docs)
    while batch := list(islice(docs, stage.prepare_batch)):
        start = time.perf_counter()
        try:
            stage.prepare(batch)
        except Exception as exc:  # nothing is lost: each document's apply does the work alone
            logger.warning("stage %s could not prepare %d documents (%s: %s); applying them one by one", stage.name, len(batch), type(exc).__name__, exc)
        stats.wall_time_s += time.perf_counter() - start
        yield from batch


def run_stage(
    stage: Stage,
    docs: Iterable[Document],
    stats: StageStats,
    measure: TextMeasure,
    reject: RejectSink,
) -> Iterator[Document]:
    """Stream ``docs`` through ``stage``; yield the kept ones and account for every one."""
    for doc, domain, size_in, text_in, (keep, reason) in _verdicts(stage, docs, stats, measure):
        counters = stage.__dict__.get("counters")
        if counters:
            stats.domain(domain).add_counters(counters)
            counters.clear()
        if keep:
            size_out = measure(doc)
            stats.record_kept(domain, size_in, size_out, stage.copies(doc))
            if doc.metadata["domain"] != domain:
                stats.record_reassigned(domain, doc.metadata["domain"], size_out)
            yield doc
        else:
            doc.text = text_in  # the rejected copy is the document as it entered the stage
            doc.metadata["domain"] = domain
            stats.record_rejected(domain, reason, size_in)
            reject(doc, reason, doc.metadata.get(RAW_KEY))


def run_stages(
    stages: list[Stage],
    docs: Iterable[Document],
    stats: dict[str, StageStats],
    measure: TextMeasure,
    reject: Callable[[str, Document, str, bytes | None], None],
) -> Iterator[Document]:
    """``docs`` streamed through every stage in turn; ``reject`` also receives the stage's name."""
    for stage in stages:
        docs = run_stage(stage, docs, stats[stage.name], measure, lambda d, r, raw, s=stage.name: reject(s, d, r, raw))
    return docs
