"""The ``extract`` stage: main text out of HTML, with trafilatura or resiliparse, in a CPU-limited child."""

from __future__ import annotations

import logging
from functools import partial

from datatrove.data import Document
from datatrove.pipeline.extractors.trafilatura import Trafilatura

from curation.extraction import trafilatura_fast
from curation.extraction import extract_worker
from curation.extraction.extract_worker import WALL_CLOCK_FACTOR, ExtractionWorker, outcome
from curation.core.stage import Stage, Verdict

logger = logging.getLogger(__name__)

ENGINES = ("trafilatura", "resiliparse")
# pages sent to the child in one message (~0.4 MB of HTML at the scale corpus's mean), at most
# PREPARE_CHARS of them: one round trip for many pages, and a bounded message
PREPARE_BATCH = 32
PREPARE_CHARS = 4_000_000

__all__ = ["ENGINES", "WALL_CLOCK_FACTOR", "TextExtraction", "resiliparse_extract"]


def resiliparse_extract(html: str) -> str:
    """resiliparse's main-content text (the extractor DCLM uses): a C++ DOM, ~15x trafilatura's speed."""
    from resiliparse.extract.html2text import extract_plain_text

    return extract_plain_text(html, main_content=True)


class WithFastTrafilatura:
    """An extractor that first makes trafilatura faster with the same output (``trafilatura_fast``), in its own process.

    Called first in the extraction child (forked), so the Ray worker and anything else in the
    parent keep stock trafilatura.
    """

    def __init__(self, extract_fn):
        self.extract_fn = extract_fn
        self.installed = False

    def __call__(self, html: str) -> str | None:
        if not self.installed:
            replaced = trafilatura_fast.install()
            logger.debug("trafilatura: %d XPaths compiled, element classes looked up in C", replaced)
            self.installed = True
        return self.extract_fn(html)


class TextExtraction(Stage):
    """HTML documents become their main text; plain-text documents pass through unchanged.

    Extraction runs in a persistent child process (``ExtractionWorker``) so a page that makes the
    extractor loop or exhaust memory costs ``timeout_s`` (CPU seconds) and a rejection, not the
    worker. trafilatura's own cross-document deduplication is off: it keeps an LRU cache of text
    seen in earlier pages, which would make a page's text depend on which pages preceded it.
    With ``fast_trafilatura`` the child evaluates trafilatura's costliest XPaths as compiled attribute
    tests and looks its element classes up in C (``trafilatura_fast``): the same text, in about half
    the time. ``run_stage`` hands the stage its pages ``PREPARE_BATCH`` at a time (``prepare``), and
    they go to the child in one message each way instead of one round trip a page; ``apply`` then
    takes each page's result, or extracts the page alone where its batch did not come back whole.
    """

    name = "extract"
    prepare_batch = PREPARE_BATCH

    def __init__(
        self,
        timeout_s: float = 5.0,
        favour_precision: bool = True,
        max_html_bytes: int = 2_000_000,
        engine: str = "trafilatura",
        fast_trafilatura: bool = True,
    ):
        if engine not in ENGINES:
            raise ValueError(f"extract.engine must be one of {ENGINES}, got {engine!r}")
        self.engine = engine
        self.timeout_s = timeout_s
        self.max_html_bytes = max_html_bytes
        if engine == "trafilatura":
            self.extract_fn = Trafilatura(favour_precision=favour_precision, timeout=timeout_s, deduplicate=False).extract
            if fast_trafilatura:
                self.extract_fn = WithFastTrafilatura(self.extract_fn)
        else:
            self.extract_fn = partial(resiliparse_extract)
        # what the child computes: stages with equal keys can share one (``extract_worker.acquire``)
        self.extractor_key = (engine, favour_precision, fast_trafilatura if engine == "trafilatura" else None, timeout_s)
        self._sandbox: ExtractionWorker | None = None
        self._prepared: dict[int, tuple[str, tuple]] = {}  # by id(doc): its text as sent, the child's (status, value)

    def open(self) -> None:
        if self._sandbox is None:
            self._sandbox = extract_worker.acquire(self.extractor_key, lambda: ExtractionWorker(self.extract_fn, self.timeout_s))

    def close(self) -> None:
        if self._sandbox is not None:
            extract_worker.release(self.extractor_key, self._sandbox)
            self._sandbox = None

    def _needs_child(self, doc: Document) -> bool:
        # characters <= bytes, so the size test never rejects a page under the limit
        return doc.metadata.get("content_type") != "text" and len(doc.text) <= self.max_html_bytes

    def prepare(self, docs: list[Document]) -> None:
        pages = [d for d in docs if self._needs_child(d)]
        self._prepared.clear()
        if len(pages) < 2:
            return
        if self._sandbox is None:
            self.open()
        for group in _within_chars(pages, PREPARE_CHARS):
            results = self._sandbox.extract_many([d.text for d in group]) if len(group) > 1 else None
            if results is not None:
                self._prepared.update((id(d), (d.text, result)) for d, result in zip(group, results))

    def apply(self, doc: Document) -> Verdict:
        if doc.metadata.get("content_type") == "text":
            return bool(doc.text.strip()) or (False, "empty")
        if not self._needs_child(doc):
            return False, "too_large"
        prepared = self._prepared.pop(id(doc), None)
        if self._sandbox is None:
            self.open()
        try:
            if prepared is not None and prepared[0] is doc.text:
                text = outcome(*prepared[1])
            else:
                text = self._sandbox.extract(doc.text)
        except TimeoutError:
            return False, "extraction_timeout"
        except EOFError:  # the child died (memory, a crash in C); the next page starts a new one
            return False, "extraction_crashed"
        except RuntimeError:  # the extractor raised on this page
            return False, "extraction_error"
        if not text or not text.strip():
            return False, "no_text_extracted"
        doc.text = text
        return True


def _within_chars(docs: list[Document], limit: int) -> list[list[Document]]:
    """``docs`` in order, cut into runs of at most ``limit`` characters of text (a longer page alone)."""
    groups: list[list[Document]] = []
    size = 0
    for doc in docs:
        if not groups or size + len(doc.text) > limit:
            groups.append([])
            size = 0
        groups[-1].append(doc)
        size += len(doc.text)
    return groups
