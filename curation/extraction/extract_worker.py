"""A persistent child process that extracts pages one at a time, each under a CPU-time limit.

Why a child: a page that makes an extractor loop, exhaust memory or crash in C costs one page
(rejected as ``extraction_timeout`` / ``extraction_crashed``), never the worker. Why this one and not
datatrove's ``ExtractorSandbox``: there the parent enforces the timeout by the wall clock (the same
run gave different outputs on a busy machine) and, to count CPU time instead, had to poll the
child's ``/proc`` entry every 50 ms while it waited. Here the child limits itself:

- ``setitimer(ITIMER_PROF)`` raises inside the extractor after ``timeout_s`` of the child's CPU
  time (user + system; a stopped or starved child uses none), so the page is rejected and the child
  goes on to the next one with no restart;
- ``RLIMIT_CPU`` is the backstop for code that never returns to the interpreter (a C loop): the
  kernel ends the child with SIGXCPU ``timeout_s + 1`` CPU seconds later, read here as a timeout;
- the parent waits in one blocking ``poll`` of ``WALL_CLOCK_FACTOR x timeout_s``, for a child that
  gets no CPU at all (blocked), with no busy loop.

So a page costs one pickled string each way through a pipe, or less: ``extract_many`` sends a
batch of pages in one message and takes their results back in one, each page still under its own
CPU limit in the child, which saves the parent two pipe messages and two wake-ups a page (the
stage sends its pages that way, ``TextExtraction.prepare``). A stage that closes hands its child
back (``acquire`` / ``release``): the next stage with the same extractor in this process (a Ray
worker runs shard after shard) reuses it, instead of forking and warming up a new child for every
shard, and its parent's pages are copied on write once per worker, not once per shard. The child is
forked and inherits the
parent's file descriptors (in a Ray worker, its sockets to the raylet): were the parent killed and
the child lived on, Ray would never see the worker die and never retry its task, so the child asks
the kernel for SIGKILL when its parent dies (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import ctypes
import math
import multiprocessing
import os
import resource
import signal
import sys
from collections.abc import Callable, Hashable

WALL_CLOCK_FACTOR = 10  # a child that uses no CPU is stopped after this many times the timeout
WARMUP_WALL_S = 120.0  # the first page imports and builds the extractor's caches: be patient
_PR_SET_PDEATHSIG = 1
_OK, _TIMEOUT, _ERROR = 0, 1, 2


class _PageTimeout(BaseException):
    """Raised by the CPU timer inside the extractor (a BaseException: extractors catch Exception)."""


def _on_cpu_timer(signum, frame):
    raise _PageTimeout


def _die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):  # no prctl: the child lives on as before
            pass
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)


def _extract_one(extract_fn: Callable[[str], str | None], html: str, timeout_s: float) -> tuple[int, str | None]:
    used = resource.getrusage(resource.RUSAGE_SELF)
    soft = math.ceil(used.ru_utime + used.ru_stime + timeout_s) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (soft, resource.getrlimit(resource.RLIMIT_CPU)[1]))
    try:
        signal.setitimer(signal.ITIMER_PROF, timeout_s)
        try:
            return _OK, extract_fn(html)
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0)
    except _PageTimeout:
        return _TIMEOUT, None
    except Exception as exc:
        return _ERROR, f"{type(exc).__name__}: {exc}"


def _extract_guarded(extract_fn: Callable[[str], str | None], html: str, timeout_s: float) -> tuple[int, str | None]:
    try:
        return _extract_one(extract_fn, html, timeout_s)
    except _PageTimeout:  # the timer fired between the extractor's return and its disarming
        return _TIMEOUT, None


def _child(conn, extract_fn, timeout_s: float, parent_pid: int, warmup_html: str) -> None:
    _die_with_parent(parent_pid)
    signal.signal(signal.SIGPROF, _on_cpu_timer)
    extract_fn(warmup_html)
    conn.send(None)  # ready
    while True:
        try:
            html = conn.recv()
        except EOFError:  # the parent closed the pipe
            return
        if isinstance(html, list):  # a batch: each page under its own CPU limit, the results in one reply
            conn.send([_extract_guarded(extract_fn, page, timeout_s) for page in html])
        else:
            conn.send(_extract_guarded(extract_fn, html, timeout_s))


class ExtractionWorker:
    """``extract(html)`` in the child: the text, or ``TimeoutError`` / ``EOFError`` (the child died)."""

    def __init__(self, extract_fn: Callable[[str], str | None], timeout_s: float, warmup_html: str = "<html><body><p>warm up</p></body></html>"):
        self.extract_fn = extract_fn
        self.timeout_s = timeout_s
        self.warmup_html = warmup_html
        self.process: multiprocessing.Process | None = None
        self.conn = None

    def start(self) -> None:
        parent, child = multiprocessing.get_context("fork").Pipe()
        self.process = multiprocessing.get_context("fork").Process(
            target=_child, args=(child, self.extract_fn, self.timeout_s, os.getpid(), self.warmup_html), daemon=True
        )
        self.process.start()
        child.close()
        self.conn = parent
        try:
            if not self.conn.poll(max(WARMUP_WALL_S, WALL_CLOCK_FACTOR * self.timeout_s)):
                raise TimeoutError("extraction worker did not start")
            self.conn.recv()
        except (TimeoutError, EOFError):
            self.close()
            raise

    def alive(self) -> bool:
        return self.process is not None and self.process.is_alive()

    def _ensure_running(self) -> None:
        if not self.alive():
            self.close()
            self.start()

    def extract(self, html: str) -> str | None:
        self._ensure_running()
        try:
            self.conn.send(html)
            if not self.conn.poll(WALL_CLOCK_FACTOR * self.timeout_s):
                raise TimeoutError("extraction got no CPU for too long")
            status, value = self.conn.recv()
        except (EOFError, OSError, TimeoutError) as exc:
            self.process.join(timeout=1)
            timed_out = isinstance(exc, TimeoutError) or self.process.exitcode == -signal.SIGXCPU
            self.close()
            raise (TimeoutError if timed_out else EOFError)("extraction child " + ("timed out" if timed_out else "died")) from exc
        return outcome(status, value)

    def extract_many(self, pages: list[str]) -> list[tuple[int, str | None]] | None:
        """Each page's (status, value) for ``outcome``, from one message each way; None where the batch
        did not come back whole (the child died or got no CPU): extract those pages one at a time.

        Each page still runs under its own CPU limit, and a page that times out costs only itself.
        A page that kills the child (a crash in C, ``RLIMIT_CPU``) costs the batch, which the caller
        redoes page by page, where it costs that page alone: crashes are rare, and the batch saves
        two pipe messages and two wake-ups a page (~0.1 ms of the parent's CPU a page,
        ``benchmarks.extraction_sandbox``).
        """
        self._ensure_running()
        try:
            self.conn.send(pages)
            if not self.conn.poll(WALL_CLOCK_FACTOR * self.timeout_s * len(pages)):
                raise TimeoutError("extraction got no CPU for too long")
            results = self.conn.recv()
        except (EOFError, OSError, TimeoutError):
            self.close()
            return None
        return results

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        if self.process is not None:
            if self.process.is_alive():
                self.process.kill()
            self.process.join(timeout=5)
            self.process = None


def outcome(status: int, value: str | None) -> str | None:
    """A page's text from the child's (status, value); ``TimeoutError`` or ``RuntimeError`` (the extractor raised)."""
    if status == _TIMEOUT:
        raise TimeoutError("extraction exceeded its CPU time")
    if status == _ERROR:
        raise RuntimeError(value)
    return value


# idle children by extractor, at most one each: what a closing stage leaves for the next one in this process
_idle: dict[Hashable, ExtractionWorker] = {}


def acquire(key: Hashable, make: Callable[[], ExtractionWorker]) -> ExtractionWorker:
    """A started child for the extractor ``key`` names: the idle one this process kept, else a new one."""
    worker = _idle.pop(key, None)
    if worker is not None and worker.alive():
        return worker
    if worker is not None:
        worker.close()
    worker = make()
    worker.start()
    return worker


def release(key: Hashable, worker: ExtractionWorker) -> None:
    """Keep ``worker`` for the next ``acquire`` of ``key`` (a dead one is closed)."""
    previous = _idle.pop(key, None)
    if previous is not None and previous is not worker:
        previous.close()
    if worker.alive():
        _idle[key] = worker
    else:
        worker.close()


def close_idle() -> None:
    """Stop every child kept for reuse."""
    while _idle:
        _idle.popitem()[1].close()
