"""Starting or joining Ray: a cluster when one is named, otherwise a local Ray sized to the machine."""

from __future__ import annotations

import functools
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from tqdm import tqdm

from pipelines.config import RayConfig
from pipelines.progress import current_progress
from tokenizer.storage import STATS, summary

logger = logging.getLogger(__name__)
_task_options: dict[str, int] = {}  # the session's bounds on a task's worker (RayConfig), for run_tasks

# store requests the tasks of this driver retried (transient errors), per kind: each task returns
# its own process's count beside its result (a Ray worker runs one task at a time)
TASK_STORE_RETRIES: Counter = Counter()
_driver_baseline: Counter = Counter()


def reset_store_retries() -> None:
    """Start counting a run's store retries: its tasks' and this driver process's own."""
    global _driver_baseline
    TASK_STORE_RETRIES.clear()
    _driver_baseline = STATS.counts()


def store_retries() -> dict:
    """Store requests retried since ``reset_store_retries``, in all and per kind (a measurement:
    how flaky the store was, not what the run produced)."""
    return summary(STATS.counts() - _driver_baseline + TASK_STORE_RETRIES)


def _counting_retries(fn: Callable[..., Any]) -> Callable[..., tuple[Any, Counter]]:
    """``fn`` returning also the store retries made while it ran; same name, so Ray shows ``fn``'s."""

    @functools.wraps(fn)
    def counted(*args):
        # imported here: this closure is pickled by value, and the counter (it holds a lock) must be
        # the worker's own
        from tokenizer.storage import STATS as counter

        before = counter.counts()
        result = fn(*args)
        return result, counter.counts() - before

    return counted


@contextmanager
def ray_session(cfg: RayConfig) -> Iterator[None]:
    """Connect to ``cfg.address`` or ``$RAY_ADDRESS``, else start a local Ray; shut down what we started."""
    import ray

    before = dict(_task_options)
    _task_options.clear()  # this session's bounds, also on a Ray someone else started
    if cfg.worker_max_tasks is not None:
        _task_options["max_calls"] = cfg.worker_max_tasks
    if cfg.task_memory_mb is not None:
        _task_options["memory"] = cfg.task_memory_mb << 20
    started = not ray.is_initialized()
    if started:
        address = cfg.address or os.environ.get("RAY_ADDRESS")
        if address:
            logger.info("joining Ray cluster at %s", address)
            ray.init(address=address, logging_level=logging.WARNING)
        else:
            num_cpus = cfg.num_cpus or os.cpu_count() or 1
            logger.info("starting a local Ray with %d CPUs", num_cpus)
            ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level=logging.WARNING)
    try:
        yield
    finally:
        _task_options.clear()
        _task_options.update(before)
        if started:
            ray.shutdown()


def run_tasks(
    fn: Callable[..., Any],
    calls: Sequence[tuple],
    desc: str,
    progress: bool = True,
    on_result: Callable[[Any], None] | None = None,
    done_before: int = 0,
) -> list[Any]:
    """Run ``fn(*args)`` for every ``args`` in ``calls`` as Ray tasks, one CPU each, results in order.

    A task whose worker dies is retried by Ray; an exception raised by ``fn`` itself fails the run
    after the other tasks finish, so their completed shards are kept for the next attempt.
    ``done_before`` counts units an earlier attempt finished (resumed runs), for the progress shown.
    """
    import ray

    remote = ray.remote(num_cpus=1, max_retries=3, **_task_options)(_counting_retries(fn))
    refs = [remote.remote(*args) for args in calls]
    index = {ref: i for i, ref in enumerate(refs)}
    results: list[Any] = [None] * len(refs)
    errors: list[BaseException] = []
    pending = list(refs)
    log = current_progress()
    if log is not None:
        log.start(desc, len(refs) + done_before, done_before)
    with tqdm(total=len(refs) + done_before, initial=done_before, desc=desc, unit="shard", disable=not progress) as bar:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                try:
                    results[index[ref]], retried = ray.get(ref)
                    TASK_STORE_RETRIES.update(retried)
                    if on_result is not None:
                        on_result(results[index[ref]])
                except Exception as exc:  # gather the rest before failing
                    errors.append(exc)
                    logger.error("task %s failed: %s", desc, exc)
                bar.update(1)
                if log is not None:
                    log.advance(desc)
    if errors:
        raise errors[0]
    return results
