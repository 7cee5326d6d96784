"""Jobs on Ray through the Ray Jobs API: the API process submits entrypoints, asks their state,
stops them, and never runs pipeline work itself.

With ``RAY_JOBS_ADDRESS`` unset the service starts a local Ray head once and records it in its
state dir; a restarted API process finds the same head (and the jobs running on it) there.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from service import local_ray
from service.settings import ServiceSettings

logger = logging.getLogger(__name__)

# Ray's job states → ours
STATES = {"PENDING": "queued", "RUNNING": "running", "SUCCEEDED": "succeeded", "FAILED": "failed", "STOPPED": "cancelled"}


@dataclass(frozen=True)
class RayJobState:
    state: str
    message: str | None
    started_at: float | None
    finished_at: float | None


class RayJobs:
    def __init__(self, settings: ServiceSettings):
        self.settings = settings
        self.address = settings.ray_jobs_address or self._local_head()
        os.environ.setdefault("RAY_AUTH_MODE", "token")
        from ray.job_submission import JobSubmissionClient

        self.client = JobSubmissionClient(self.address)

    def _local_head(self) -> str:
        record = Path(self.settings.state_dir) / "ray_head.json"
        if record.exists():
            head = json.loads(record.read_text())
            if local_ray.dashboard_alive(head["dashboard_url"]):
                logger.info("using the local Ray head recorded in %s", record)
                return head["dashboard_url"]
        node = local_ray.start_head(self.settings.local_ray_cpus, log_dir=Path(self.settings.state_dir))
        record.write_text(json.dumps(node.to_dict()))
        return node.dashboard_url

    def submit(self, submission_id: str, entrypoint: str, num_cpus: float = 0, num_gpus: float = 0, env: dict[str, str] | None = None) -> None:
        self.client.submit_job(
            entrypoint=entrypoint,
            submission_id=submission_id,
            entrypoint_num_cpus=num_cpus,
            entrypoint_num_gpus=num_gpus,
            runtime_env={"env_vars": env} if env else None,
            metadata={"service": "curation-to-pretraining"},
        )

    def state(self, submission_id: str) -> RayJobState:
        info = self.client.get_job_info(submission_id)
        status = info.status.value if hasattr(info.status, "value") else str(info.status)
        return RayJobState(
            STATES.get(status, "running"),
            info.message,
            info.start_time / 1000 if info.start_time else None,
            info.end_time / 1000 if info.end_time else None,
        )

    def known(self, submission_id: str) -> bool | None:
        """Whether Ray has a job of this id: True, False, or None when Ray cannot say (unreachable)."""
        try:
            self.client.get_job_info(submission_id)
            return True
        except RuntimeError as exc:  # the Jobs API answers an unknown id with a 404
            return False if "status code 404" in str(exc) else None
        except Exception:
            return None

    def logs_tail(self, submission_id: str, chars: int = 4000) -> str:
        try:
            return self.client.get_job_logs(submission_id)[-chars:]
        except Exception as exc:  # logs are a courtesy in an error message, never the reason it fails
            return f"(logs unavailable: {exc})"

    def node_resources(self) -> list[dict[str, float]]:
        """Each alive node's total resources, from Ray's state API (through the dashboard, with its token)."""
        from ray.util.state import list_nodes

        return [dict(n.resources_total) for n in list_nodes(address=self.address, filters=[("state", "=", "ALIVE")], timeout=10)]

    def stop(self, submission_id: str) -> bool:
        return self.client.stop_job(submission_id)
