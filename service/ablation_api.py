"""Ablation jobs in the API: ``POST /v1/jobs/ablation`` (the same typed config as
``python -m ablation``), their progress (variants curated, runs trained), their results,
and each variant's funnel and training metrics, to compare the variants side by side.

The job runs ``python -m ablation`` on the cluster; everything shown here is read from the
files it writes under its folder (``ablation.ablate`` lists them): a local folder, or the object
store when the service has one (``AblationConfig.root`` is a ``StorePath`` then).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI, Query
from pydantic import BaseModel, Field

from ablation.config import AblationConfig, Variant
from pipelines.stages import stage_names
from service import run_views
from service.job_configs import JobError
from service.run_views import read_json
from service.store import Job


class AblationJobRequest(BaseModel):
    model_config = {"extra": "forbid"}
    config: AblationConfig = Field(default_factory=AblationConfig, description="the same typed config as `python -m ablation`")


def ablation_progress(job: Job) -> dict:
    """Which variants are curated and which seeds trained, from the files each finished step leaves."""
    cfg = AblationConfig.model_validate(job.request["config"])
    variants, seeds = cfg.resolved_variants(), cfg.train.seeds
    rows = []
    for v in variants:
        stats = read_json(cfg.root / "curation" / v.name / "stats.json") or {}
        trained = [s for s in seeds if (cfg.root / "train" / v.name / f"seed-{s}" / "bpb.json").exists()]
        rows.append({"variant": v.name, "curated": stats.get("status") == "complete", "seeds_trained": trained})
    curated = sum(r["curated"] for r in rows)
    trained = sum(len(r["seeds_trained"]) for r in rows)
    runs = len(variants) * len(seeds)
    return {
        "overall_percent": round(100 * (curated + trained) / (len(variants) + runs), 1),
        "variants_curated": curated,
        "variants": len(variants),
        "runs_trained": trained,
        "runs": runs,
        "results": (cfg.root / "results.json").exists(),
        "per_variant": rows,
    }


def _variant(cfg: AblationConfig, name: str) -> Variant:
    variants = cfg.resolved_variants()
    found = next((v for v in variants if v.name == name), None)
    if found is None:
        raise JobError("variant", f"unknown variant {name!r}; this ablation's variants are {[v.name for v in variants]}", 422)
    return found


def ablation_routes(app: FastAPI, ctx, job_out) -> None:
    """``ctx``: the API's shared context (``service.api.Context``); ``job_out``: its job response type."""

    @app.post("/v1/jobs/ablation", status_code=201, response_model=job_out, dependencies=[Depends(ctx.authorized)])
    def submit_ablation(body: AblationJobRequest):
        job = ctx.jobs().submit_ablation(body.config)
        return job_out.of(job, queue_position=ctx.jobs().queue_position(job))

    def ablation_job(job_id: str) -> tuple[Job, AblationConfig]:
        job = ctx.job_or_404(job_id)
        if job.kind != "ablation":
            raise JobError("job_id", f"job {job_id} is a {job.kind} job: only ablation jobs have ablation results")
        return job, AblationConfig.model_validate(job.request["config"])

    @app.get("/v1/jobs/{job_id}/ablation/{variant}/funnel")
    def get_variant_funnel(job_id: str, variant: str) -> dict:
        """A variant's curation run: its ``stats.json``, or the funnel of its completed shards while it runs."""
        job, cfg = ablation_job(job_id)
        run_cfg = cfg.curation(_variant(cfg, variant))
        funnel = run_views.curation_funnel(run_cfg.run_dir, stage_names(run_cfg))
        if funnel is None:
            raise JobError("variant", f"variant {variant} of job {job_id} has not completed a shard yet (state {job.state})", 404)
        return {"job": job.id, "variant": variant, **funnel}

    @app.get("/v1/jobs/{job_id}/ablation/{variant}/metrics", dependencies=[Depends(ctx.read_authorized)])
    def get_variant_metrics(job_id: str, variant: str, max_points: Annotated[int, Query(ge=1, le=100_000)] = 2000) -> dict:
        """Each seed's training metrics on a variant (loss, ``val_loss``, ``val_bpb/<domain>``), by seed."""
        job, cfg = ablation_job(job_id)
        _variant(cfg, variant)
        runs = {str(s): run_views.training_metrics(cfg.root / "train" / variant / f"seed-{s}", max_points) for s in cfg.train.seeds}
        return {"job": job.id, "variant": variant, "seeds": runs}

    @app.get("/v1/jobs/{job_id}/ablation", dependencies=[Depends(ctx.read_authorized)])
    def get_ablation(job_id: str) -> dict:
        """The ablation's ``results.json``: per variant, bits per byte per domain over seeds, and retention."""
        job, cfg = ablation_job(job_id)
        results = read_json(cfg.root / "results.json")
        if results is None:
            raise JobError("job_id", f"job {job_id} has no results yet (state {job.state}): they are written when every run is scored", 404)
        return {"job": job.id, "state": job.state, **results}
