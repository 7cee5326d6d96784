"""The ``extract`` stage: main text out of HTML with trafilatura, in datatrove's timeout sandbox."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import time

from datatrove.data import Document
from datatrove.pipeline.extractors.base import ExtractorSandbox
from datatrove.pipeline.extractors.trafilatura import Trafilatura

from curation.core.stage import Stage, Verdict

logger = logging.getLogger(__name__)


_PR_SET_PDEATHSIG = 1


# A child that uses no CPU (blocked, or starved for longer than any real load starves it) is
# stopped after this many times the timeout of wall-clock time.
WALL_CLOCK_FACTOR = 10


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (Linux /proc), or None where that cannot be read."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


class DyingSandbox(ExtractorSandbox):
    """datatrove's sandbox, with a child that dies with its parent and a timeout in CPU seconds.

    The child is forked, so it inherits every file descriptor of its parent: in a Ray worker, the
    worker's connections to the raylet. Were the worker killed (OOM killer, a lost node, SIGKILL)
    while the child lived on, the raylet would still see the worker's sockets open, never notice
    the death, and never retry the task: the run would hang. So the child asks the kernel to
    SIGKILL it when its parent dies (Linux ``PR_SET_PDEATHSIG``).

    datatrove times a page by the wall clock, so whether a slow page is rejected depended on how
    busy the machine was: the same run gave different outputs under load (a 650 KB page of the IANA
    crawl took 5 s on a loaded 2-core machine and 1 s on an idle one). Here ``timeout`` is CPU time
    of the child, which does not depend on other processes; a child that uses no CPU for
    ``WALL_CLOCK_FACTOR`` times as long is stopped too.
    """

    def _ensure_process(self, extract_fn):
        self._parent_pid = os.getpid()
        timeout, self.timeout = self.timeout, max(60.0, self.timeout)  # the warm-up is not a page: be patient
        try:
            super()._ensure_process(extract_fn)
        finally:
            self.timeout = timeout

    def process_document(self, text, extract_fn):
        self._ensure_process(extract_fn)
        try:
            self.parent_conn.send(text)
            pid = self.process.pid
            cpu_start = _cpu_seconds(pid)
            wall_start = time.monotonic()
            while True:
                if self.parent_conn.poll(0.05):
                    result = self.parent_conn.recv()
                    if isinstance(result, Exception):
                        raise result
                    return result
                if not self.process.is_alive():
                    raise EOFError("Child process died (probably OOM-killed)")
                wall = time.monotonic() - wall_start
                cpu = _cpu_seconds(pid)
                used = wall if cpu is None or cpu_start is None else cpu - cpu_start
                if used >= self.timeout or wall >= WALL_CLOCK_FACTOR * self.timeout:
                    raise TimeoutError("Document extraction timed out")
        except (TimeoutError, EOFError):
            self._cleanup_process()
            raise

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
    trafilatura loop or exhaust memory costs ``timeout_s`` (CPU seconds) and a rejection, not the worker.
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
