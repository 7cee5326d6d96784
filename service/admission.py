"""Admission: how many jobs run on the cluster at once, and refusing jobs the cluster can never run.

Every curation job spreads its tasks over all of the cluster's CPUs, so jobs started together only
share the same cores (15 at once on 2 CPUs held 3 GB and ran no faster). The default limit is
fitted to the cluster: one running job per two CPUs, at least one; ``CURATION_MAX_RUNNING_JOBS``
sets it. The others wait in the service's queue, in order, with their position shown.
"""

from __future__ import annotations

import logging
import time

from service.settings import ServiceSettings

logger = logging.getLogger(__name__)
CLUSTER_TTL_S = 30.0  # nodes join and leave; asking Ray on every poll would cost a request a second


class Admission:
    def __init__(self, settings: ServiceSettings, ray):
        self.settings, self.ray = settings, ray
        self._nodes: list[dict[str, float]] | None = None
        self._asked = 0.0

    def nodes(self) -> list[dict[str, float]] | None:
        """Each node's total resources (``CPU``, ``GPU``), or None while Ray cannot say."""
        if self._nodes is None or time.monotonic() - self._asked > CLUSTER_TTL_S:
            try:
                self._nodes = self.ray.node_resources()
                self._asked = time.monotonic()
            except Exception as exc:  # Ray unreachable for a moment: keep what was known
                logger.warning("cannot read the cluster's resources from Ray: %s", exc)
        return self._nodes

    def limit(self) -> int:
        if self.settings.max_running_jobs:
            return self.settings.max_running_jobs
        cpus = sum(n.get("CPU", 0) for n in self.nodes() or [])
        return max(1, int(cpus // 2))

    def check_fits(self, cpus: float, gpus: float) -> None:
        """Refuse a job that no node can ever hold (a training job runs its processes on one node)."""
        from service.job_configs import JobError

        nodes = self.nodes()
        if not nodes:
            return  # unknown now: Ray would keep it pending, and cancel stops it at once
        most_cpus = max(n.get("CPU", 0) for n in nodes)
        most_gpus = max(n.get("GPU", 0) for n in nodes)
        if cpus > most_cpus:
            raise JobError("nproc", f"{cpus:g} processes need {cpus:g} CPUs on one node; the largest node of the cluster has {most_cpus:g}", 422)
        if gpus > most_gpus:
            raise JobError("gpus_per_proc", f"the job needs {gpus:g} GPUs on one node; the largest node of the cluster has {most_gpus:g}", 422)

    def check_workers_fit(self, workers: int, cpus_per_worker: float, gpus_per_worker: float) -> None:
        """Refuse Ray Train workers that no node can hold, or more of them than the cluster holds at all."""
        from service.job_configs import JobError

        nodes = self.nodes()
        if not nodes:
            return
        if not any(n.get("CPU", 0) >= cpus_per_worker and n.get("GPU", 0) >= gpus_per_worker for n in nodes):
            raise JobError("cpus_per_worker", f"no node of the cluster has {cpus_per_worker:g} CPUs and {gpus_per_worker:g} GPUs for one worker", 422)
        fits = sum(min(n.get("CPU", 0) // cpus_per_worker, n.get("GPU", 0) // gpus_per_worker if gpus_per_worker else float("inf")) for n in nodes)
        if workers > fits:
            raise JobError("workers", f"{workers} workers of {cpus_per_worker:g} CPUs / {gpus_per_worker:g} GPUs: the cluster holds {int(fits)}", 422)
