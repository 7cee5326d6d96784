"""The configs a job runs with: the request's config resolved, then every path in it confined to the
data roots by the fields' path markers (``service.confinement``), then validated with files
opened, so what runs is exactly what was checked.

An ablation job runs from files the service writes: its base curation config and its trainer
config resolved and confined here, with no overrides left to be read again on the cluster."""

from __future__ import annotations

import typing
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import to_jsonable_python

from ablation.config import AblationConfig
from pipelines.config import CHECK_FILES, ConfigError, WebCorpusConfig
from pipelines.config_loading import load_config
from service.confinement import PathNotAllowed, _models_in, confine_config, path_fields, path_kind, path_values
from service.settings import PROJECT_ROOT, ServiceSettings
from tokenizer.store_path import StorePath, remove_tree
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


def _with_default_paths(model: type[BaseModel], tree: dict) -> dict:
    """``tree`` (a config as a request sends it) with the default of every path field and path-holding
    section it leaves out, so that defaults are confined like the paths a request gives."""
    out = dict(tree)
    for name, field in model.model_fields.items():
        sections = _models_in(field.annotation)
        if field.is_required():
            continue  # nothing to fill in: validation refuses its absence
        if name not in out and (path_kind(field) == "read" or any(next(path_fields(s), None) for s in sections)):
            out[name] = to_jsonable_python(field.get_default(call_default_factory=True))
        elif isinstance(out.get(name), dict) and len(sections) == 1 and typing.get_origin(field.annotation) not in (list, tuple):
            out[name] = _with_default_paths(sections[0], out[name])
    return out


def confined_curation_config(cfg: WebCorpusConfig | dict, settings: ServiceSettings, job_id: str) -> WebCorpusConfig:
    """The job's config with every input path confined to the data roots (by the fields' path
    markers), its output placed in the service's runs folder under the job id, and the data roots
    recorded so that the run checks every file again as it opens it.

    ``cfg`` as the request sent it (a dict) is validated once, here, after every path was confined:
    files are opened (model cards) only then. A request that has a path outside the roots and also
    fails validation is refused for the latter (a 422 before a 403), as a typed request would be."""
    tree = cfg.model_dump(mode="json") if isinstance(cfg, WebCorpusConfig) else _with_default_paths(WebCorpusConfig, cfg)
    fixed = {"runs_dir": str(settings.runs_root), "data_roots": [str(r) for r in settings.roots]}
    try:
        data = confine_config(WebCorpusConfig, tree, settings.roots, PROJECT_ROOT, "config.", fixed)
    except PathNotAllowed:
        try:  # without files: nothing outside the roots is opened to say what is wrong
            WebCorpusConfig.model_validate(tree)
        except ValidationError as exc:
            raise InvalidConfig(exc, "config.") from None
        raise
    data.update(run_name=job_id)
    data["ray"] = {**(data.get("ray") or {}), "address": None, "num_cpus": None}  # the job joins the cluster it runs on (its worker bounds kept)
    try:
        return WebCorpusConfig.model_validate(data, context=CHECK_FILES)
    except ValidationError as exc:
        raise InvalidConfig(exc, "config.") from None


def _get(tree: dict, dotted: str):
    for key in dotted.split("."):
        tree = tree.get(key) if isinstance(tree, dict) else None
    return tree


def _override_for(overrides: list[str], dotted: str, where: str = "", otherwise: str = "overrides") -> str:
    """The override that set ``dotted`` (``data.manifest=…`` or the whole ``data={…}``), for the error."""
    for i in range(len(overrides) - 1, -1, -1):
        key = overrides[i].partition("=")[0].strip()
        if dotted == key or dotted.startswith(key + "."):
            return f"{where}overrides.{i}"
    return otherwise


def _confine_train(resolved: dict, default: dict, overrides: list[str], settings: ServiceSettings, out_dir: Path,
                   where: str = "", otherwise: str = "overrides") -> dict:
    """A resolved trainer config with its read paths confined; the manifest and every output path are
    the service's: one moved (by an override or the config file) is refused, naming what moved it."""
    service_set = ["data.manifest"] + [f for f, kind in path_fields(TrainConfig) if kind in ("write", "roots")]
    for dotted in service_set:
        if _get(resolved, dotted) != _get(default, dotted):
            raise JobError(_override_for(overrides, dotted, where, otherwise), f"{dotted} is set by the service (the job's folder and its manifest), not by a request", 422)
    fixed = {f: str(out_dir) for f, kind in path_fields(TrainConfig) if kind == "write"}
    try:
        return confine_config(TrainConfig, resolved, settings.roots, PROJECT_ROOT, "", fixed)
    except PathNotAllowed as exc:
        raise PathNotAllowed(_override_for(overrides, exc.field, where, otherwise), "", settings.roots, str(exc)) from None


def confined_training_config(preset: str, overrides: list[str], manifest: str, out_dir: Path | StorePath, settings: ServiceSettings) -> TrainConfig:
    """The training config a job runs with: ``preset`` plus ``overrides`` resolved first, then each
    path checked by its marker, whatever spelling set it (dotted or a whole section). The manifest
    and every output path are the service's: an override that moves them is refused."""
    try:
        resolved = load_train_config(preset, None, overrides).model_dump(mode="json")
        default = load_train_config(preset, None, []).model_dump(mode="json")
    except ValueError as exc:
        raise JobError("overrides", str(exc), 422) from None
    data = _confine_train(resolved, default, overrides, settings, out_dir)
    data["data"]["manifest"] = manifest
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        raise InvalidConfig(exc, "config.") from None


# ---- ablation jobs ----------------------------------------------------------------------------
def _dump(path: Path | StorePath, tree: dict) -> str:
    path.write_text(yaml.safe_dump(tree, sort_keys=False, allow_unicode=True))
    return str(path)


def confined_ablation_config(cfg: AblationConfig, settings: ServiceSettings, job_id: str, job_dir: Path | StorePath) -> AblationConfig:
    """The ablation a job runs: its output under ``<runs>/ablations/<job id>`` (the runs folder, or the
    store when the service has one, as for a curation job's run), its base curation
    config (file and shared overrides) resolved and confined like a curation job's, its trainer
    config resolved and confined like a training job's, both written to ``job_dir``; then every
    variant is resolved on that base, and one whose overrides move a path is refused."""
    if cfg.out_dir != AblationConfig.model_fields["out_dir"].default:
        raise JobError("config.out_dir", "set by the service (<runs>/ablations/<job id>), not by a request", 422)
    out_dir = settings.runs_root / "ablations" / job_id
    data = confine_config(AblationConfig, cfg.model_dump(mode="json"), settings.roots, PROJECT_ROOT, "config.", {"out_dir": str(out_dir)})
    base = _ablation_curation_base(data["curation_config"], cfg.curation_overrides, settings, out_dir / cfg.name / "curation")
    train, train_cfg = _ablation_train(data["train"], settings)
    job_dir.mkdir(parents=True, exist_ok=True)
    try:  # the variants are resolved on the written base; a refused request leaves nothing behind
        data.update(curation_config=_dump(job_dir / "curation.yaml", base), curation_overrides=[], train={**train, "config": _dump(job_dir / "train.yaml", train_cfg)})
        job_cfg = AblationConfig.model_validate(data)
        _check_variants(job_cfg, base)
    except Exception:
        remove_tree(job_dir)
        raise
    return job_cfg


def _ablation_curation_base(path: str | None, overrides: list[str], settings: ServiceSettings, runs_dir: Path | StorePath) -> dict:
    try:
        from_file = load_config(path, []).model_dump(mode="json")
    except ConfigError as exc:
        raise JobError("config.curation_config", str(exc), 422) from None
    try:
        resolved = load_config(path, overrides).model_dump(mode="json")
    except ConfigError as exc:
        raise JobError("config.curation_overrides", str(exc), 422) from None
    for dotted, kind in path_fields(WebCorpusConfig):
        if kind in ("write", "roots") and _get(resolved, dotted) != _get(from_file, dotted):
            raise JobError(_override_for(overrides, dotted, "config.curation_"), f"{dotted} is set by the service (the ablation's folder), not by a request", 422)
    # the roots of a curation job: the data roots and the store roots, so a variant reads its sources where they lie
    fixed = {"runs_dir": str(runs_dir), "data_roots": [str(r) for r in settings.roots]}
    try:
        data = confine_config(WebCorpusConfig, resolved, settings.roots, PROJECT_ROOT, "", fixed)
    except PathNotAllowed as exc:
        field = _override_for(overrides, exc.field, "config.curation_", "config.curation_config")
        raise PathNotAllowed(field, "", settings.roots, f"{exc.field}: {exc}") from None
    data["ray"] = {**(data.get("ray") or {}), "address": None, "num_cpus": None}  # the job joins the cluster it runs on (its worker bounds kept)
    try:
        WebCorpusConfig.model_validate(data, context=CHECK_FILES)
    except ValidationError as exc:
        raise InvalidConfig(exc, "config.curation.") from None
    return data


def _ablation_train(train: dict, settings: ServiceSettings) -> tuple[dict, dict]:
    """The trainer settings and config of every run, resolved from the preset, the (confined) file and the overrides."""
    preset, config, overrides = train["preset"], train["config"], train["overrides"]
    try:
        default = load_train_config(preset, None, []).model_dump(mode="json")
        load_train_config(preset, config, [])
    except ValueError as exc:
        raise JobError("config.train.config" if config else "config.train.preset", str(exc), 422) from None
    try:
        resolved = load_train_config(preset, config, overrides).model_dump(mode="json")
    except ValueError as exc:
        raise JobError("config.train.overrides", str(exc), 422) from None
    data = _confine_train(resolved, default, overrides, settings, Path(default["out_dir"]), "config.train.", "config.train.config")
    try:
        TrainConfig.model_validate(data)
    except ValidationError as exc:
        raise InvalidConfig(exc, "config.train.") from None
    # the ablation sets checkpoint.every=0 before the overrides: a value the request chose is kept
    keep = [f"checkpoint.every={data['checkpoint']['every']}"] if data["checkpoint"]["every"] != default["checkpoint"]["every"] else []
    return {**train, "overrides": keep}, data


def _check_variants(cfg: AblationConfig, base: dict) -> None:
    try:
        variants = cfg.resolved_variants()
    except ConfigError as exc:
        raise JobError("config.variants", str(exc), 422) from None
    expected = path_values(WebCorpusConfig, base)
    for i, variant in enumerate(variants):
        field = f"config.variants.{i}" if i < len(cfg.variants) else "config.leave_one_out"
        try:
            got = path_values(WebCorpusConfig, cfg.curation(variant).model_dump(mode="json"))
        except ConfigError as exc:
            raise JobError(field, str(exc), 422) from None
        moved = sorted(k for k in set(expected) | set(got) if expected.get(k) != got.get(k))
        if moved:
            raise JobError(f"{field}.overrides", f"variant {variant.name} moves {moved[0]}: a variant switches stages; paths belong in the base config", 422)
