"""The REST API: curation, training and ablation jobs on Ray, their live progress, funnel, rejected
samples, training metrics and ablation results, under ``/v1``; ``/healthz``, Prometheus
``/metrics`` and the dashboard at ``/``.

Access (SECURITY.md has the threat model): every mutating call needs ``Authorization: Bearer
<token>``, checked before its body is read. The job list, job status, progress and funnel are open;
document text (rejected samples), training metrics, ablation results and error details need the API
token or the read token. Only the configured hosts are answered. Every 4xx body is
``{"detail": [{"field": ..., "message": ...}]}`` naming the offending field.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from pydantic import BaseModel, Field, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from service import run_views
from service.ablation_api import ablation_progress, ablation_routes
from service.confinement import PathNotAllowed, confine_read
from service.job_configs import InvalidConfig, JobError
from service.jobs import JobService
from service.ray_jobs import RayJobs
from service.settings import PROJECT_ROOT, ServiceSettings
from service.store import Job, JobStore
from tokenizer.store_path import as_path

logger = logging.getLogger(__name__)
DASHBOARD = Path(__file__).with_name("dashboard.html")
PRESETS = Literal["tiny", "124m", "350m"]


class ApiError(Exception):
    def __init__(self, status: int, field: str, message: str):
        self.status, self.field, self.message = status, field, message


def _problem(status: int, field: str, message: str) -> JSONResponse:
    return JSONResponse({"detail": [{"field": field, "message": message}]}, status_code=status)


# ---- requests and responses ---------------------------------------------------------------------
class CurationJobRequest(BaseModel):
    model_config = {"extra": "forbid"}
    # validated once, after its paths are confined (service.job_configs), not here as well
    config: dict = Field(default_factory=dict, description="the same typed config as `python -m pipelines.web_corpus` (configs/web_corpus.yaml lists every field)")


class TrainingJobRequest(BaseModel):
    model_config = {"extra": "forbid"}
    curation_job: str | None = Field(None, description="train on this finished curation job's token shards")
    manifest: str | None = Field(None, description="or on a manifest.json (or tokens/ folder) inside the data roots")
    preset: PRESETS = "tiny"
    overrides: list[str] = Field(default_factory=list, max_length=64, description="trainer `section.field=value` overrides")
    nproc: int = Field(1, ge=1, le=64, description="processes (torch.distributed.run) on one node")
    gpus_per_proc: float = Field(0, ge=0, le=1)
    workers: int | None = Field(None, ge=1, le=1024, description="Ray Train workers over the cluster's nodes (FSDP2 across them, "
                                "restarted from the last checkpoint when a worker is lost); null: nproc processes on one node")
    cpus_per_worker: float = Field(1, gt=0, le=1024)
    gpus_per_worker: float = Field(0, ge=0, le=64)

    @model_validator(mode="after")
    def _one_source(self) -> TrainingJobRequest:
        if (self.curation_job is None) == (self.manifest is None):
            raise ValueError("give exactly one of curation_job and manifest")
        return self


class JobOut(BaseModel):
    id: str
    kind: str
    state: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    error: str | None
    output_dir: str
    parent_id: str | None
    progress: dict | None = None
    queue_position: int | None = Field(None, description="1 for the next job the service hands to Ray; null once handed over")

    @classmethod
    def of(cls, job: Job, progress: dict | None = None, queue_position: int | None = None, reader: bool = True) -> JobOut:
        error = job.error if reader or job.error is None else "the job failed; its error is shown to a caller with a token"
        return cls(id=job.id, kind=job.kind, state=job.state, created_at=job.created_at, started_at=job.started_at,
                   finished_at=job.finished_at, error=error, output_dir=job.output_dir, parent_id=job.parent_id, progress=progress,
                   queue_position=queue_position)


# ---- middleware ---------------------------------------------------------------------------------
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}


class Guard:
    """What is refused before a route runs: a Host the service does not answer (DNS rebinding), a
    mutating call without the token (before its body is read), a body over ``limit`` bytes (by
    Content-Length or as a chunked body streams: 413), and a body that stalls (408)."""

    def __init__(self, app, limit: int, hosts: list[str], token: str, body_timeout_s: float = 10.0):
        self.app, self.limit, self.token, self.body_timeout_s = app, limit, token, body_timeout_s
        self.hosts = {h.strip("[]").lower() for h in hosts}

    def _host_allowed(self, headers: dict) -> bool:
        host = headers.get(b"host", b"").decode("latin-1").lower()
        host = host[1:].split("]", 1)[0] if host.startswith("[") else host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        return "*" in self.hosts or host in self.hosts

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        if not self._host_allowed(headers):
            return await _problem(400, "Host", "this host name is not served here (CURATION_ALLOWED_HOSTS)")(scope, receive, send)
        if scope["method"] in MUTATING and not bearer_matches(headers.get(b"authorization", b""), [self.token]):
            return await _problem(401, "Authorization", "a valid bearer token is required for this call")(scope, receive, send)
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await _problem(413, "body", f"request body of {length.decode('latin-1')} bytes exceeds the limit of {self.limit}")(scope, receive, send)
        if scope["method"] not in MUTATING:
            return await self.app(scope, receive, send)
        body, more = b"", True
        while more:  # read it all here, so a limit or a stall is answered before anything parses it
            try:
                message = await asyncio.wait_for(receive(), self.body_timeout_s)
            except TimeoutError:
                return await _problem(408, "body", f"the request body did not arrive within {self.body_timeout_s:g} s")(scope, receive, send)
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.limit:
                return await _problem(413, "body", f"request body exceeds the limit of {self.limit} bytes")(scope, receive, send)
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def bearer_matches(header: bytes, tokens: list[str | None]) -> bool:
    scheme, _, credentials = header.decode("latin-1").partition(" ")
    if scheme.lower() != "bearer" or not credentials:
        return False
    return any(t and secrets.compare_digest(credentials.strip().encode(), t.encode()) for t in tokens)


class Timing:
    """Request latency by route template into a Prometheus histogram (plain ASGI: Starlette's
    BaseHTTPMiddleware would add a task and a stream copy to every request)."""

    def __init__(self, app, histogram: Histogram):
        self.app, self.histogram = app, histogram

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.histogram.labels(scope["method"], route).observe(time.perf_counter() - start)


def _jobs_collector(store: JobStore):
    class JobsCollector:
        def collect(self):
            gauge = GaugeMetricFamily("curation_jobs", "jobs in the store by kind and state", labels=["kind", "state"])
            for (kind, state), n in sorted(store.count_by_state().items()):
                gauge.add_metric([kind, state], n)
            yield gauge

    return JobsCollector()


# ---- the app ------------------------------------------------------------------------------------
class Context:
    """What the routes share: the settings, the job store, the job service (made at start-up) and access checks."""

    def __init__(self, settings: ServiceSettings, store: JobStore):
        self.settings, self.store = settings, store
        self.service: JobService | None = None

    def jobs(self) -> JobService:
        return self.service

    def authorized(self, request: Request) -> None:  # the Guard checked already; kept on every mutating route as well
        if not bearer_matches(request.headers.get("authorization", "").encode("latin-1"), [self.settings.api_token]):
            raise ApiError(401, "Authorization", "a valid bearer token is required for this call")

    def reader(self, request: Request) -> bool:
        return bearer_matches(request.headers.get("authorization", "").encode("latin-1"), [self.settings.api_token, self.settings.read_token])

    def read_authorized(self, request: Request) -> None:
        if not self.reader(request):
            raise ApiError(401, "Authorization", "document text, metrics and error details need the API token or the read token")

    def job_or_404(self, job_id: str) -> Job:
        job = self.store.get(job_id)
        if job is None:
            raise ApiError(404, "job_id", f"no job {job_id!r}")
        return job


def create_app(settings: ServiceSettings | None = None, ray: RayJobs | None = None, poll_interval_s: float = 1.0) -> FastAPI:
    settings = settings or ServiceSettings.from_env()
    ctx = Context(settings, JobStore(settings.database_url))
    registry = CollectorRegistry()
    latency = Histogram("curation_http_request_seconds", "API latency by route", ["method", "route"], registry=registry,
                        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
    registry.register(_jobs_collector(ctx.store))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        jobs = ctx.service = JobService(settings, ctx.store, ray or RayJobs(settings))
        jobs.recover_unsubmitted()  # jobs an earlier API process was killed while submitting
        jobs.sync_all()  # jobs that ended while no API process watched them
        jobs.start_polling(poll_interval_s)
        logger.info("service ready: Ray Jobs API %s, store %s", jobs.ray.address, settings.database_url.split("@")[-1])
        yield
        jobs.stop_polling()

    app = FastAPI(title="curation-to-pretraining", version="1", lifespan=lifespan,
                  description="Curation and training jobs on Ray, with the retention funnel of every run.")
    app.add_middleware(Guard, limit=settings.max_request_bytes, hosts=settings.allowed_hosts, token=settings.api_token,
                       body_timeout_s=settings.body_timeout_s)
    app.add_middleware(Timing, histogram=latency)
    _error_handlers(app)
    _submission_routes(app, ctx)
    ablation_routes(app, ctx, JobOut)
    _job_routes(app, ctx)
    _operations_routes(app, ctx, registry)
    return app


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError):
        return _problem(exc.status, exc.field, exc.message)

    @app.exception_handler(PathNotAllowed)
    async def path_error(_: Request, exc: PathNotAllowed):
        return _problem(403, exc.field, str(exc))

    @app.exception_handler(JobError)
    async def job_error(_: Request, exc: JobError):
        return _problem(exc.status, exc.field, str(exc))

    @app.exception_handler(InvalidConfig)
    async def invalid_config(_: Request, exc: InvalidConfig):
        return JSONResponse({"detail": exc.details}, status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception):  # a bug: logged whole for the operator, told in one line
        logger.exception("unhandled error")
        return _problem(500, "request", "internal error; the service log has the details")

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError):
        details = []
        for e in exc.errors():
            loc = [str(p) for p in e["loc"] if p not in ("body", "query", "path")]
            loc = [p for p in loc if not p.startswith("function-after[")]  # pydantic's validator wrappers
            details.append({"field": ".".join(loc) or "body", "message": e["msg"]})
        return JSONResponse({"detail": details}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException):
        return _problem(exc.status_code, "path" if exc.status_code in (404, 405) else "request", str(exc.detail))


def _submission_routes(app: FastAPI, ctx: Context) -> None:
    @app.post("/v1/jobs/curation", status_code=201, response_model=JobOut, dependencies=[Depends(ctx.authorized)])
    def submit_curation(body: CurationJobRequest) -> JobOut:
        job = ctx.jobs().submit_curation(body.config)
        return JobOut.of(job, queue_position=ctx.jobs().queue_position(job))

    @app.post("/v1/jobs/training", status_code=201, response_model=JobOut, dependencies=[Depends(ctx.authorized)])
    def submit_training(body: TrainingJobRequest) -> JobOut:
        parent = None
        if body.curation_job is not None:
            parent = ctx.store.get(body.curation_job)
            if parent is None or parent.kind != "curation":
                raise ApiError(404, "curation_job", f"no curation job {body.curation_job!r}")
            parent = ctx.jobs().sync(parent)
            if parent.state != "succeeded":
                raise JobError("curation_job", f"curation job {parent.id} is {parent.state}, not succeeded: no token shards to train on")
            manifest = str(as_path(parent.output_dir) / "tokens" / "manifest.json")
        else:
            manifest = confine_read(body.manifest, "manifest", ctx.settings.roots, PROJECT_ROOT)
        if body.workers is not None and (body.nproc != 1 or body.gpus_per_proc):
            raise ApiError(422, "workers", "give workers (Ray Train over the cluster) or nproc/gpus_per_proc (one node), not both")
        placement = {"workers": body.workers, "cpus_per_worker": body.cpus_per_worker, "gpus_per_worker": body.gpus_per_worker} if body.workers else None
        job = ctx.jobs().submit_training(manifest, body.preset, body.overrides, body.nproc, body.gpus_per_proc, parent, placement)
        return JobOut.of(job, queue_position=ctx.jobs().queue_position(job))


def _job_routes(app: FastAPI, ctx: Context) -> None:
    @app.get("/v1/jobs", response_model=list[JobOut])
    def list_jobs(request: Request, kind: Literal["curation", "training", "ablation"] | None = None,
                  state_: Annotated[Literal["queued", "running", "succeeded", "failed", "cancelled"] | None, Query(alias="state")] = None,
                  limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[JobOut]:
        can_read = ctx.reader(request)
        return [JobOut.of(j, queue_position=ctx.jobs().queue_position(j), reader=can_read) for j in ctx.store.list(kind, state_, limit)]

    @app.get("/v1/jobs/{job_id}", response_model=JobOut)
    def get_job(job_id: str, request: Request) -> JobOut:
        job = ctx.job_or_404(job_id)
        if job.kind == "curation":
            progress = run_views.curation_progress(as_path(job.output_dir), JobService.stage_names(job))
        elif job.kind == "ablation":
            progress = ablation_progress(job)
        else:
            metrics = run_views.training_metrics(as_path(job.output_dir), max_points=1)
            steps = job.request["config"]["optim"]["steps"]
            done = metrics[-1]["step"] if metrics else 0
            progress = {"overall_percent": round(100 * done / steps, 1), "step": done, "steps": steps}
            if job.request.get("placement"):
                progress["workers"] = run_views.training_workers(as_path(job.output_dir))
        if job.state == "succeeded":
            progress["overall_percent"] = 100.0
        return JobOut.of(job, progress, ctx.jobs().queue_position(job), reader=ctx.reader(request))

    @app.get("/v1/jobs/{job_id}/funnel")
    def get_funnel(job_id: str) -> dict:
        job = ctx.job_or_404(job_id)
        if job.kind != "curation":
            raise ApiError(409, "job_id", f"job {job_id} is a {job.kind} job: only curation jobs have a funnel")
        funnel = run_views.curation_funnel(as_path(job.output_dir), JobService.stage_names(job))
        if funnel is None:
            raise ApiError(404, "job_id", f"job {job_id} has not completed a shard yet (state {job.state})")
        return {"job": job.id, "state": job.state, **funnel}

    @app.get("/v1/jobs/{job_id}/rejected", dependencies=[Depends(ctx.read_authorized)])
    def get_rejected(job_id: str, stage: str, reason: str | None = None, limit: Annotated[int, Query(ge=1, le=200)] = 20,
                     offset: Annotated[int, Query(ge=0)] = 0) -> dict:
        job = ctx.job_or_404(job_id)
        if job.kind != "curation":
            raise ApiError(409, "job_id", f"job {job_id} is a {job.kind} job: only curation jobs reject documents")
        names = JobService.stage_names(job)
        if stage not in names:
            raise ApiError(422, "stage", f"unknown stage {stage!r}; this job's stages are {names}")
        docs, total = run_views.rejected_sample(as_path(job.output_dir), stage, reason, limit, offset)
        return {"job": job.id, "stage": stage, "reason": reason, "offset": offset, "total": total, "documents": docs}

    @app.get("/v1/jobs/{job_id}/metrics", dependencies=[Depends(ctx.read_authorized)])
    def get_metrics(job_id: str, max_points: Annotated[int, Query(ge=1, le=100_000)] = 2000) -> dict:
        job = ctx.job_or_404(job_id)
        if job.kind != "training":
            raise ApiError(409, "job_id", f"job {job_id} is a {job.kind} job: only training jobs have training metrics")
        return {"job": job.id, "state": job.state, "metrics": run_views.training_metrics(as_path(job.output_dir), max_points)}


def _operations_routes(app: FastAPI, ctx: Context, registry: CollectorRegistry) -> None:
    @app.post("/v1/jobs/{job_id}/cancel", response_model=JobOut, status_code=202, dependencies=[Depends(ctx.authorized)])
    def cancel(job_id: str) -> JobOut:
        return JobOut.of(ctx.jobs().cancel(ctx.job_or_404(job_id)))

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok", "ray_jobs_api": ctx.jobs().ray.address, "jobs": sum(ctx.store.count_by_state().values())}

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    def dashboard() -> FileResponse:
        return FileResponse(DASHBOARD, media_type="text/html")
