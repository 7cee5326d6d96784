"""A bounded wait for the cluster capacity a Ray Train run needs.

Ray Train (2.x, v2 controller) retries the start of a worker group without limit when the cluster
lacks the resources for it, and such retries do not count against ``max_failures``: a run whose
node is lost, on a cluster where no node replaces it, waits forever, and a job submitted through
the API stays ``running``. ``CapacityWatch`` runs beside ``TorchTrainer.fit`` in the run's driver
and ends the run, with a message that says what is missing, once the cluster has lacked the run's
resources for ``wait_s`` without a break. An autoscaler that brings a node within that time (or
``docker-compose``'s replacement worker) lets the run go on as before.

It compares the cluster's total resources (alive nodes only) with what the worker group needs. A
total that suffices but cannot be placed (one CPU free on each of two nodes for a worker of two)
is not detected: Ray Train waits on it as before.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping

logger = logging.getLogger(__name__)

POLL_S = 5.0


class CapacityWatch:
    """Calls ``on_timeout(message)`` once the cluster's resources (``read()``) have stayed below
    ``need`` for ``wait_s`` seconds in a row; ``wait_s <= 0`` waits forever, as Ray Train does."""

    def __init__(self, need: Mapping[str, float], wait_s: float, on_timeout: Callable[[str], None],
                 read: Callable[[], Mapping[str, float]] | None = None, clock: Callable[[], float] = time.monotonic,
                 poll_s: float = POLL_S):
        self.need = {k: v for k, v in need.items() if v > 0}
        self.wait_s = wait_s
        self.on_timeout = on_timeout
        self.read = read or _cluster_resources
        self.clock = clock
        self.poll_s = poll_s
        self.short_since: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def shortfall(self) -> dict[str, tuple[float, float]]:
        """Resource -> (the cluster's total, what the run needs), for each resource the cluster lacks."""
        have = self.read()
        return {k: (float(have.get(k, 0.0)), v) for k, v in self.need.items() if have.get(k, 0.0) < v}

    def check(self) -> str | None:
        """The message to fail with, once the shortfall has lasted ``wait_s``; else None."""
        short, now = self.shortfall(), self.clock()
        if not short:
            if self.short_since is not None:
                logger.info("the cluster has the run's resources again")
            self.short_since = None
            return None
        if self.short_since is None:
            self.short_since = now
            logger.warning("the cluster lacks this run's resources (%s); waiting up to %.0f s for them", _describe(short), self.wait_s)
        if now - self.short_since < self.wait_s:
            return None
        return (f"the cluster has lacked this run's resources for {now - self.short_since:.0f} s ({_describe(short)}): "
                f"a lost node was not replaced; the run stops here and resumes from its last checkpoint when started again "
                f"(--capacity-wait-s sets how long to wait, 0 forever)")

    def start(self) -> CapacityWatch:
        if self.wait_s > 0 and self.need:
            self._thread = threading.Thread(target=self._watch, name="capacity-watch", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.poll_s + 5)

    def __enter__(self) -> CapacityWatch:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                message = self.check()
            except Exception as exc:  # the GCS unreachable for a moment: not a verdict on capacity
                logger.warning("could not read the cluster's resources: %s", exc)
                continue
            if message is not None:
                self.on_timeout(message)
                return


def _describe(short: Mapping[str, tuple[float, float]]) -> str:
    return ", ".join(f"{have:g} of the {need:g} {name} it needs" for name, (have, need) in sorted(short.items()))


def _cluster_resources() -> dict[str, float]:
    import ray

    return ray.cluster_resources()
