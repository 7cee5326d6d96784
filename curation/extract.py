"""The ``extract`` stage: main text out of HTML with trafilatura, in datatrove's timeout sandbox."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys

from datatrove.data import Document
from datatrove.pipeline.extractors.base import ExtractorSandbox
from datatrove.pipeline.extractors.trafilatura import Trafilatura

from curation.stage import Stage, Verdict

logger = logging.getLogger(__name__)


_PR_SET_PDEATHSIG = 1


class DyingSandbox(ExtractorSandbox):
    """datatrove's sandbox, whose child process dies with the process that started it.

    The child is forked, so it inherits every file descriptor of its parent: in a Ray worker, the
    worker's connections to the raylet. Were the worker killed (OOM killer, a lost node, SIGKILL)
    while the child lived on, the raylet would still see the worker's sockets open, never notice
    the death, and never retry the task: the run would hang. So the child asks the kernel to
    SIGKILL it when its parent dies (Linux ``PR_SET_PDEATHSIG``).
    """

    def _ensure_process(self, extract_fn):
        self._parent_pid = os.getpid()
        super()._ensure_process(extract_fn)

    def _worker(self, conn, extract_fn):
        if sys.platform.startswith("linux"):
            try:
                ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
            except (OSError, AttributeError):  # no prctl: the child lives on as before
                pass
            if os.getppid() != self._parent_pid:  # the parent died before prctl took effect
                os._exit(1)
        super()._worker(conn, extract_fn)


class TextExtraction(Stage):
    """HTML documents become their main text; plain-text documents pass through unchanged.

    Extraction runs in a child process (datatrove's ``ExtractorSandbox``) so a page that makes
    trafilatura loop or exhaust memory costs ``timeout_s`` and a rejection, not the worker.
    trafilatura's own cross-document deduplication is off: it keeps an LRU cache of text seen in
    earlier pages, which would make a page's text depend on which pages preceded it in the shard.
    """

    name = "extract"

    def __init__(self, timeout_s: float = 5.0, favour_precision: bool = True, max_html_bytes: int = 2_000_000):
        self.extractor = Trafilatura(favour_precision=favour_precision, timeout=timeout_s, deduplicate=False)
        self.timeout_s = timeout_s
        self.max_html_bytes = max_html_bytes
        self._sandbox: ExtractorSandbox | None = None

    def open(self) -> None:
        self._sandbox = DyingSandbox(timeout=self.timeout_s, warmup_text="<html><body><p>warm up</p></body></html>")
        self._sandbox.__enter__()

    def close(self) -> None:
        if self._sandbox is not None:
            self._sandbox.__exit__(None, None, None)
            self._sandbox = None

    def apply(self, doc: Document) -> Verdict:
        if doc.metadata.get("content_type") == "text":
            return bool(doc.text.strip()) or (False, "empty")
        if len(doc.text) > self.max_html_bytes:  # characters <= bytes, so this never rejects a page under the limit
            return False, "too_large"
        if self._sandbox is None:
            self.open()
        try:
            text = self._sandbox.process_document(doc.text, self.extractor.extract)
        except TimeoutError:
            return False, "extraction_timeout"
        except EOFError:  # the child died (memory); the sandbox starts a new one for the next page
            return False, "extraction_crashed"
        if not text or not text.strip():
            return False, "no_text_extracted"
        doc.text = text
        return True
