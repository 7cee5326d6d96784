"""The configs a job runs with: the request's config resolved, then every path in it confined to the
data roots by the fields' path markers (``service.confinement``), then validated once more with
files opened, so what runs is exactly what was checked."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from pipelines.config import CHECK_FILES, WebCorpusConfig
from service.confinement import PathNotAllowed, confine_config, path_fields
from service.settings import PROJECT_ROOT, ServiceSettings
from tokenizer.store_path import StorePath
from trainer.config import TrainConfig, load_train_config


class JobError(RuntimeError):
    """A request that is valid but cannot be done now (e.g. training on an unfinished curation job)."""

    def __init__(self, field: str, message: str, status: int = 409):
        super().__init__(message)
        self.field, self.status = field, status


class InvalidConfig(ValueError):
    """The resolved config of a job fails validation; ``errors`` are pydantic's, ``prefix`` places them."""

    def __init__(self, exc: ValidationError, prefix: str):
        super().__init__(str(exc))
        self.details = [{"field": prefix + ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()]


def confined_curation_config(cfg: WebCorpusConfig, settings: ServiceSettings, job_id: str) -> WebCorpusConfig:
    """The job's config with every input path confined to the data roots (by the fields' path
    markers), its output placed in the service's runs folder under the job id, and the data roots
    recorded so that the run checks every file again as it opens it. Files are opened (model
    cards, the domain labels) only in this last validation, after every path was confined."""
    fixed = {"runs_dir": str(settings.runs_root), "data_roots": [str(r) for r in settings.roots]}
    data = confine_config(WebCorpusConfig, cfg.model_dump(mode="json"), settings.roots, PROJECT_ROOT, "config.", fixed)
    data.update(run_name=job_id)
    data["ray"] = {"address": None, "num_cpus": None}  # the job joins the cluster it runs on
    try:
        return WebCorpusConfig.model_validate(data, context=CHECK_FILES)
    except ValidationError as exc:
        raise InvalidConfig(exc, "config.") from None


def _get(tree: dict, dotted: str):
    for key in dotted.split("."):
        tree = tree.get(key) if isinstance(tree, dict) else None
    return tree


def _override_for(overrides: list[str], dotted: str) -> str:
    """The override that set ``dotted`` (``data.manifest=…`` or the whole ``data={…}``), for the error."""
    for i in range(len(overrides) - 1, -1, -1):
        key = overrides[i].partition("=")[0].strip()
        if dotted == key or dotted.startswith(key + "."):
            return f"overrides.{i}"
    return "overrides"


def confined_training_config(preset: str, overrides: list[str], manifest: str, out_dir: Path | StorePath, settings: ServiceSettings) -> TrainConfig:
    """The training config a job runs with: ``preset`` plus ``overrides`` resolved first, then each
    path checked by its marker, whatever spelling set it (dotted or a whole section). The manifest
    and every output path are the service's: an override that moves them is refused."""
    try:
        resolved = load_train_config(preset, None, overrides).model_dump(mode="json")
        default = load_train_config(preset, None, []).model_dump(mode="json")
    except ValueError as exc:
        raise JobError("overrides", str(exc), 422) from None
    service_set = ["data.manifest"] + [f for f, kind in path_fields(TrainConfig) if kind in ("write", "roots")]
    for dotted in service_set:
        if _get(resolved, dotted) != _get(default, dotted):
            raise JobError(_override_for(overrides, dotted), f"{dotted} is set by the service (the job's folder and its manifest), not by an override", 422)
    fixed = {f: str(out_dir) for f, kind in path_fields(TrainConfig) if kind == "write"}
    try:
        data = confine_config(TrainConfig, resolved, settings.roots, PROJECT_ROOT, "", fixed)
    except PathNotAllowed as exc:
        raise PathNotAllowed(_override_for(overrides, exc.field), "", settings.roots, str(exc)) from None
    data["data"]["manifest"] = manifest
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        raise InvalidConfig(exc, "config.") from None
