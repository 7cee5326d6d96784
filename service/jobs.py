"""Jobs: turning accepted requests into Ray job entrypoints, keeping the store in step with Ray.

A curation job is ``python -m pipelines.web_corpus --config <file>`` on the cluster; a training
job is ``torch.distributed.run ... -m trainer`` on a curation job's token shards. Their requests
and configs are written to the shared runs folder, so any node of the cluster can read them.
"""

from __future__ import annotations

import glob
import logging
import shlex
import threading
import time
from pathlib import Path

import yaml

from pipelines.config import WebCorpusConfig
from pipelines.stages import stage_names
from service.ray_jobs import RayJobs
from service.run_views import read_json
from service.settings import PROJECT_ROOT, ServiceSettings
from service.store import Job, JobStore

logger = logging.getLogger(__name__)


class PathNotAllowed(Exception):
    def __init__(self, field: str, path: str, roots: list[Path]):
        super().__init__(f"{path!r} is outside the data roots {[str(r) for r in roots]}")
        self.field = field


class JobError(RuntimeError):
    """A request that is valid but cannot be done now (e.g. training on an unfinished curation job)."""

    def __init__(self, field: str, message: str, status: int = 409):
        super().__init__(message)
        self.field, self.status = field, status


def confine(path: str, field: str, roots: list[Path], base: Path) -> str:
    """``path`` made absolute (relative to ``base``) if it stays inside a data root, else refused.

    A glob is checked by its fixed leading folders (resolved: symlinks and ``..`` cannot leave),
    and may not climb back out with ``..`` after its first wildcard.
    """
    parts = (Path(path) if Path(path).is_absolute() else base / path).parts
    k = next((i for i, part in enumerate(parts) if glob.has_magic(part)), len(parts))
    fixed = Path(*parts[:k]).resolve()
    inside = any(fixed == r or fixed.is_relative_to(r) for r in roots)
    if not inside or ".." in parts[k:]:
        raise PathNotAllowed(field, path, roots)
    return str(Path(fixed, *parts[k:]))


def confined_curation_config(cfg: WebCorpusConfig, settings: ServiceSettings, job_id: str) -> WebCorpusConfig:
    """The job's config with every path checked against the data roots and its output placed in
    the service's runs folder under the job id."""
    roots, base = settings.data_roots, PROJECT_ROOT
    data = cfg.model_dump(mode="json")
    for i, source in enumerate(data["sources"]):
        source["paths"] = [confine(p, f"config.sources.{i}.paths.{j}", roots, base) for j, p in enumerate(source["paths"])]
    data["dedup"]["previous_indexes"] = [
        confine(p, f"config.dedup.previous_indexes.{i}", roots, base) for i, p in enumerate(data["dedup"].get("previous_indexes") or [])
    ]
    if data["tokenizer"].get("model_path"):
        data["tokenizer"]["model_path"] = confine(data["tokenizer"]["model_path"], "config.tokenizer.model_path", roots, base)
    data.update(run_name=job_id, runs_dir=str(settings.runs_dir))
    data["ray"] = {"address": None, "num_cpus": None}  # the job joins the cluster it runs on
    return WebCorpusConfig.model_validate(data)


_STAGE_NAMES: dict[str, list[str]] = {}  # job id -> its stages: a job's config never changes


class JobService:
    def __init__(self, settings: ServiceSettings, store: JobStore, ray: RayJobs):
        self.settings, self.store, self.ray = settings, store, ray
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- submission -------------------------------------------------------------------------
    def _job_dir(self, job_id: str) -> Path:
        return self.settings.runs_dir / ".jobs" / job_id

    def submit_curation(self, cfg: WebCorpusConfig) -> Job:
        job_id = self.store.new_id("curation")
        cfg = confined_curation_config(cfg, self.settings, job_id)
        request = {"config": cfg.model_dump(mode="json")}
        config_file = self._job_dir(job_id) / "config.yaml"
        config_file.parent.mkdir(parents=True, exist_ok=True)
        config_file.write_text(yaml.safe_dump(request["config"], sort_keys=False, allow_unicode=True))
        job = self.store.create("curation", request, str(cfg.run_dir), job_id=job_id)
        entry = f"{shlex.quote(self.settings.python)} -m pipelines.web_corpus --no-progress --config {shlex.quote(str(config_file))}"
        return self._submit(job, entry, num_cpus=0)

    def submit_training(self, manifest: str, preset: str, overrides: list[str], nproc: int, gpus_per_proc: float, parent: Job | None) -> Job:
        from trainer.config import load_train_config  # imports torch: only when a training job is asked for

        job_id = self.store.new_id("training")
        out_dir = self.settings.runs_dir / "train" / job_id
        overrides = self._confined_overrides(overrides)
        all_overrides = [f"data.manifest={manifest}", f"out_dir={out_dir}", *overrides]
        cfg = load_train_config(preset, None, all_overrides)  # raises ValueError naming the field
        request = {"manifest": manifest, "preset": preset, "overrides": overrides, "nproc": nproc, "config": cfg.to_dict()}
        job = self.store.create("training", request, str(out_dir), parent_id=parent.id if parent else None, job_id=job_id)
        launcher = f"-m torch.distributed.run --standalone --nproc_per_node={nproc}" if nproc > 1 else ""
        entry = " ".join(
            [shlex.quote(self.settings.python), launcher, "-m trainer --no-progress", f"--preset {shlex.quote(preset)}",
             f"--data {shlex.quote(manifest)}", f"--out {shlex.quote(str(out_dir))}", *map(shlex.quote, overrides)]
        )
        return self._submit(job, entry, num_cpus=nproc, num_gpus=nproc * gpus_per_proc)

    def _confined_overrides(self, overrides: list[str]) -> list[str]:
        """Trainer overrides may not move the job's input or output; a teacher run must lie in a data root."""
        confined = []
        for i, item in enumerate(overrides):
            key, _, value = item.partition("=")
            key = key.strip()
            if key in ("out_dir", "data.manifest"):
                raise JobError(f"overrides.{i}", f"{key} is set by the service (the job's folder and its manifest), not by an override", 422)
            if key == "distill.teacher" and value:
                item = f"{key}={confine(value, f'overrides.{i}', self.settings.data_roots, PROJECT_ROOT)}"
            confined.append(item)
        return confined

    def _submit(self, job: Job, entrypoint: str, num_cpus: float, num_gpus: float = 0) -> Job:
        try:
            self.ray.submit(job.id, entrypoint, num_cpus=num_cpus, num_gpus=num_gpus)
        except Exception as exc:
            return self.store.update(job.id, state="failed", error=f"submission to Ray at {self.ray.address} failed: {exc}", finished_at=time.time())
        logger.info("submitted %s job %s: %s", job.kind, job.id, entrypoint)
        return self.store.update(job.id, submission_id=job.id)

    def cancel(self, job: Job) -> Job:
        if not job.terminal and job.submission_id:
            self.ray.stop(job.submission_id)
        return self.sync(job)

    # ---- state ---------------------------------------------------------------------------------
    def sync(self, job: Job) -> Job:
        """Ask Ray for an unfinished job's state and record it (with the error of a failed job)."""
        if job.terminal or not job.submission_id:
            return job
        try:
            ray_state = self.ray.state(job.submission_id)
        except Exception as exc:  # Ray unreachable for a moment: keep the last known state
            logger.warning("cannot read the state of job %s from Ray: %s", job.id, exc)
            return job
        fields: dict = {"state": ray_state.state, "started_at": ray_state.started_at, "finished_at": ray_state.finished_at}
        if ray_state.state == "failed":
            fields["error"] = self._failure_text(job, ray_state.message)
        if any(getattr(job, k) != v for k, v in fields.items()):
            return self.store.update(job.id, **fields)
        return job

    def _failure_text(self, job: Job, message: str | None) -> str:
        """The run's own error (its stats.json) when it wrote one, else Ray's message and the log tail."""
        stats = read_json(Path(job.output_dir) / "stats.json") if job.kind == "curation" else None
        if stats and stats.get("error"):
            return stats["error"]
        return f"{message or 'job failed'}\n--- last lines of the job's log ---\n{self.ray.logs_tail(job.submission_id)}"

    def recover_unsubmitted(self) -> None:
        """Jobs an earlier API process recorded but did not see through submission (it was killed
        between writing the job and hearing back from Ray). Called once at start, before any request
        is served, so no submission of this process is in flight: a job Ray knows is followed again;
        one Ray never received is failed with the reason, never left queued for ever."""
        for job in self.store.unfinished():
            if job.submission_id:
                continue
            known = self.ray.known(job.id)  # the submission id is the job id
            if known:
                logger.info("job %s reached Ray before the last API process stopped; following it", job.id)
                self.sync(self.store.update(job.id, submission_id=job.id))
            elif known is False:
                self.store.update(job.id, state="failed", finished_at=time.time(),
                                  error="the API process stopped before this job was submitted to Ray; submit it again")

    def sync_all(self) -> None:
        for job in self.store.unfinished():
            self.sync(job)

    def start_polling(self, interval_s: float = 1.0) -> None:
        def loop() -> None:
            while not self._stop.wait(interval_s):
                try:
                    self.sync_all()
                except Exception:  # the poller must outlive any one bad poll
                    logger.exception("job state poll failed")

        self._thread = threading.Thread(target=loop, name="job-poller", daemon=True)
        self._thread.start()

    def stop_polling(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)

    # ---- views -------------------------------------------------------------------------------
    @staticmethod
    def stage_names(job: Job) -> list[str]:
        if job.id not in _STAGE_NAMES:  # validate the config once, not on every status read
            _STAGE_NAMES[job.id] = stage_names(WebCorpusConfig.model_validate(job.request["config"]))
        return _STAGE_NAMES[job.id]
