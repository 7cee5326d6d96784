"""Jobs: turning accepted requests into Ray job entrypoints, keeping the store in step with Ray.

A curation job is ``python -m pipelines.web_corpus --config <file>`` on the cluster; a training
job is ``torch.distributed.run ... -m trainer`` on a curation job's token shards; an ablation job
is ``python -m ablation --config <file>`` (its curation runs spread over the cluster as a
curation job's do, its training runs are processes of the job's driver). Their requests
and configs are written to the shared runs folder, so any node of the cluster can read them.
"""

from __future__ import annotations

import logging
import re
import shlex
import threading
import time

import yaml

from ablation.config import AblationConfig
from pipelines.config import WebCorpusConfig
from pipelines.stages import stage_names
from service.job_configs import JobError, confined_ablation_config, confined_curation_config, confined_training_config
from service.admission import Admission
from service.ray_jobs import RayJobs
from service.run_views import read_json
from service.settings import PROJECT_ROOT, ServiceSettings
from service.store import Job, JobStore
from tokenizer.store_path import AnyPath, as_path

logger = logging.getLogger(__name__)


def _read_text(path: AnyPath, limit: int = 2000) -> str | None:
    """The start of a text file, local or on the store; None when it cannot be read (not written)."""
    try:
        return path.read_bytes()[: 4 * limit].decode("utf-8", errors="replace")[:limit].strip() or None
    except Exception as exc:  # missing, or a store that failed this once: the generic message stands in
        logger.debug("cannot read %s: %s", path, exc)
        return None


_STAGE_NAMES: dict[str, list[str]] = {}  # job id -> its stages: a job's config never changes


class JobService:
    def __init__(self, settings: ServiceSettings, store: JobStore, ray: RayJobs):
        self.settings, self.store, self.ray = settings, store, ray
        self.admission = Admission(settings, ray)
        self._admit_lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- submission -------------------------------------------------------------------------
    def _job_dir(self, job_id: str):
        """Where a job's resolved config goes: beside the runs, so the cluster reads it from the same storage."""
        return self.settings.runs_root / ".jobs" / job_id

    def submit_curation(self, cfg: WebCorpusConfig) -> Job:
        job_id = self.store.new_id("curation")
        cfg = confined_curation_config(cfg, self.settings, job_id)
        config_file = self._job_dir(job_id) / "config.yaml"
        config_file.parent.mkdir(parents=True, exist_ok=True)
        config_file.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True))
        entry = f"{shlex.quote(self.settings.python)} -m pipelines.web_corpus --no-progress --config {shlex.quote(str(config_file))}"
        request = {"config": cfg.model_dump(mode="json"), "launch": {"entrypoint": entry, "num_cpus": 0, "num_gpus": 0}}
        return self._enqueue(self.store.create("curation", request, str(cfg.run_dir), job_id=job_id))

    def submit_training(self, manifest: str, preset: str, overrides: list[str], nproc: int, gpus_per_proc: float, parent: Job | None,
                        placement: dict | None = None) -> Job:
        """``placement`` (workers, cpus_per_worker, gpus_per_worker): Ray Train over the cluster's
        nodes; else ``nproc`` processes of ``torch.distributed.run`` on one node."""
        if placement:
            self.admission.check_workers_fit(**placement)
        else:
            self.admission.check_fits(nproc, nproc * gpus_per_proc)
        job_id = self.store.new_id("training")
        out_dir = self.settings.runs_root / "train" / job_id
        cfg = confined_training_config(preset, overrides, manifest, out_dir, self.settings)
        config_file = self._job_dir(job_id) / "train.yaml"
        config_file.parent.mkdir(parents=True, exist_ok=True)
        config_file.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True))
        python, data, out, conf = (shlex.quote(str(x)) for x in (self.settings.python, manifest, out_dir, config_file))
        # the resolved, confined config is what runs: the overrides are not handed on to be read again
        if placement:
            entry = (f"{python} -m trainer.ray_train --data {data} --storage {out} --workers {placement['workers']} "
                     f"--cpus-per-worker {placement['cpus_per_worker']:g} --gpus-per-worker {placement['gpus_per_worker']:g} "
                     f"--preset {shlex.quote(preset)} --config {conf}")
            launch = {"entrypoint": entry, "num_cpus": 0, "num_gpus": 0}  # the driver only; Ray Train places the workers
        else:
            launcher = f"-m torch.distributed.run --standalone --nproc_per_node={nproc}" if nproc > 1 else ""
            entry = f"{python} {launcher} -m trainer --no-progress --preset {shlex.quote(preset)} --config {conf} --data {data} --out {out}"
            launch = {"entrypoint": entry, "num_cpus": nproc, "num_gpus": nproc * gpus_per_proc}
        request = {"manifest": manifest, "preset": preset, "overrides": overrides, "nproc": nproc, "placement": placement,
                   "config": cfg.model_dump(mode="json"), "launch": launch}
        job = self.store.create("training", request, str(out_dir), parent_id=parent.id if parent else None, job_id=job_id)
        return self._enqueue(job)

    def submit_ablation(self, cfg: AblationConfig) -> Job:
        job_id = self.store.new_id("ablation")
        cfg = confined_ablation_config(cfg, self.settings, job_id, self._job_dir(job_id))
        config_file = self._job_dir(job_id) / "ablation.yaml"
        config_file.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True))
        entry = f"{shlex.quote(self.settings.python)} -m ablation --no-progress --config {shlex.quote(str(config_file))}"
        request = {"config": cfg.model_dump(mode="json"), "launch": {"entrypoint": entry, "num_cpus": 0, "num_gpus": 0}}
        return self._enqueue(self.store.create("ablation", request, str(cfg.root), job_id=job_id))

    def _enqueue(self, job: Job) -> Job:
        """Record the job as queued and hand it to Ray now if a slot is free; else the poller does."""
        self.admit()
        return self.store.get(job.id) or job

    def admit(self) -> None:
        """Submit waiting jobs, oldest first, while fewer than the limit are on Ray."""
        with self._admit_lock:
            waiting = sorted((j for j in self.store.unfinished() if not j.submission_id), key=lambda j: j.created_at)
            on_ray = sum(1 for j in self.store.unfinished() if j.submission_id)
            for job in waiting[: max(0, self.admission.limit() - on_ray)]:
                launch = job.request["launch"]
                self._submit(job, launch["entrypoint"], launch["num_cpus"], launch["num_gpus"])

    def queue_position(self, job: Job) -> int | None:
        """1 for the next job to be handed to Ray; None once it was (or it ended)."""
        if job.terminal or job.submission_id:
            return None
        waiting = sorted((j for j in self.store.unfinished() if not j.submission_id), key=lambda j: j.created_at)
        return next((i + 1 for i, j in enumerate(waiting) if j.id == job.id), None)

    def _submit(self, job: Job, entrypoint: str, num_cpus: float, num_gpus: float = 0) -> Job:
        try:
            self.ray.submit(job.id, entrypoint, num_cpus=num_cpus, num_gpus=num_gpus)
        except Exception as exc:
            if "already exists" in str(exc):  # an earlier API process handed it over before it died
                return self.store.update(job.id, submission_id=job.id)
            logger.warning("submission of job %s to Ray at %s failed: %s", job.id, self.ray.address, exc)
            return self.store.update(job.id, state="failed", error="submission to Ray failed; the service log has the reason", finished_at=time.time())
        logger.info("submitted %s job %s: %s", job.kind, job.id, entrypoint)
        return self.store.update(job.id, submission_id=job.id)

    def cancel(self, job: Job) -> Job:
        """A job not yet handed to Ray, or waiting on Ray for resources, is cancelled at once; a running
        one is asked to stop and shows ``cancelled`` when Ray has stopped it."""
        with self._admit_lock:
            job = self.store.get(job.id) or job
            if job.terminal:
                return job
            if not job.submission_id:
                return self.store.update(job.id, state="cancelled", finished_at=time.time())
            self.ray.stop(job.submission_id)
            if job.state == "queued":  # waiting on Ray for resources: nothing of it runs yet
                job = self.store.update(job.id, state="cancelled", finished_at=time.time())
        self.admit()  # its slot may be free now
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
        """What a client is told of a failure: the run's own error (the curation run's stats.json, the
        trainer's error.txt), never Ray's log, which holds command lines, paths and tracebacks; the log
        goes to the service's own log, for the operator."""
        out = as_path(job.output_dir)  # on the store when the service has one
        if job.kind == "curation":
            own = (read_json(out / "stats.json") or {}).get("error")
        else:
            own = _read_text(out / "error.txt")
        logger.warning("job %s failed: %s\n--- last lines of its log ---\n%s", job.id, message, self.ray.logs_tail(job.submission_id))
        if own:
            return own
        code = re.search(r"exit code (-?\d+)", message or "")
        return f"the job's process failed{f' with exit code {code.group(1)}' if code else ''}; the service log (or `ray job logs {job.id}`) has its output"

    def recover_unsubmitted(self) -> None:
        """Jobs an earlier API process recorded but had not handed to Ray, or was killed while handing
        over. Called once at start, before any request is served: a job Ray knows is followed again;
        one Ray never received stays queued and is handed over by admission in its turn."""
        for job in self.store.unfinished():
            if job.submission_id:
                continue
            if "launch" not in job.request:  # recorded by a version that submitted at once
                self.store.update(job.id, state="failed", finished_at=time.time(),
                                  error="the API process stopped before this job was submitted to Ray; submit it again")
            elif self.ray.known(job.id):  # the submission id is the job id
                logger.info("job %s reached Ray before the last API process stopped; following it", job.id)
                self.sync(self.store.update(job.id, submission_id=job.id))

    def sync_all(self) -> None:
        for job in self.store.unfinished():
            self.sync(job)
        self.admit()

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
