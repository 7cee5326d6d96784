"""What an ablation compares: curation variants of one raw input, and the training each is followed by.

A variant is a list of curation overrides (``section.field=value``) on a shared base run config.
Named variants climb the ladder of issue 19, one kind of stage at a time, and the leave-one-out
set switches off one optional stage of the full pipeline each; a variant may also be written out
in full. Decontamination is never optional here: a variant that trained on the evaluation text
would win by memory, so a variant that switches it off is refused.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from configs.fields import READ_PATH, WRITE_PATH
from configs.overrides import ConfigError, load
from pipelines.config import WebCorpusConfig
from pipelines.config_loading import load_config
from tokenizer.store_path import AnyPath, as_path

NAME = r"^[A-Za-z0-9_.-]+$"

# the stages a variant may switch off, each by its config switch
OPTIONAL_STAGES: dict[str, str] = {
    "url_filter": "url_filter.enabled",
    "gopher_repetition": "quality.gopher_repetition.enabled",
    "gopher_quality": "quality.gopher_quality.enabled",
    "c4_quality": "quality.c4_quality.enabled",
    "fineweb_quality": "quality.fineweb_quality.enabled",
    "quality_classifier": "quality.classifier.enabled",
    "dedup": "dedup.enabled",
    "pii": "pii.enabled",
}
HEURISTICS = ("gopher_repetition", "gopher_quality", "c4_quality", "fineweb_quality")


def _without(*stages: str) -> list[str]:
    return [f"{OPTIONAL_STAGES[s]}=false" for s in stages]


# issue 19's ladder: extraction and language ID only, then heuristics, the classifier, dedup, all
LADDER: dict[str, tuple[str, list[str]]] = {
    "extract-lang": ("extract + language ID only", _without(*OPTIONAL_STAGES)),
    "with-heuristics": ("+ heuristic filters", _without("url_filter", "quality_classifier", "dedup", "pii")),
    "with-classifier": ("+ quality classifier", _without("url_filter", "dedup", "pii")),
    "with-dedup": ("+ dedup", _without("url_filter", "pii")),
    "full": ("the full pipeline", []),
}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Variant(Strict):
    name: str = Field(pattern=NAME)
    overrides: list[str] = Field(default_factory=list, description="curation overrides, section.field=value")
    label: str | None = None


class TrainSettings(Strict):
    """The same model, for the same number of tokens (fixed steps x global batch x sequence), per seed."""

    preset: str = "tiny"
    config: str | None = Field(None, description="trainer YAML on top of the preset", json_schema_extra=READ_PATH)
    overrides: list[str] = Field(default_factory=list, description="trainer overrides, section.field=value")
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1, description="optim.seed of each run")


class AblationConfig(Strict):
    name: str = Field("ablation", pattern=NAME)
    out_dir: str = Field("runs/ablations", json_schema_extra=WRITE_PATH)
    curation_config: str | None = Field(None, description="base curation YAML of every variant", json_schema_extra=READ_PATH)
    curation_overrides: list[str] = Field(default_factory=list, description="applied to every variant before its own")
    variants: list[str | Variant] = Field(default_factory=lambda: list(LADDER), min_length=1, description=f"named ({', '.join(LADDER)}) or written out")
    leave_one_out: bool = Field(False, description="also the full pipeline without each optional stage in turn")
    train: TrainSettings = TrainSettings()

    @field_validator("variants")
    @classmethod
    def _known_names(cls, variants: list[str | Variant]) -> list[str | Variant]:
        unknown = [v for v in variants if isinstance(v, str) and v not in LADDER]
        if unknown:
            raise ValueError(f"unknown variant(s) {unknown}: name one of {list(LADDER)} or give name and overrides")
        return variants

    @property
    def root(self) -> AnyPath:
        """Where the ablation writes: a ``Path``, or a ``StorePath`` when ``out_dir`` is a URL
        (the service's ``CURATION_STORAGE``), so that every node of the cluster reads what it wrote."""
        return as_path(self.out_dir) / self.name

    def resolved_variants(self) -> list[Variant]:
        out = [Variant(name=v, label=LADDER[v][0], overrides=LADDER[v][1]) if isinstance(v, str) else v for v in self.variants]
        if self.leave_one_out:
            out += [Variant(name=f"full-no-{s}", label=f"full without {s}", overrides=_without(s)) for s in OPTIONAL_STAGES]
        names = [v.name for v in out]
        if len(set(names)) != len(names):
            raise ConfigError(f"variant names must be unique, got {names}")
        return out

    def curation(self, variant: Variant, tokenizer_model: AnyPath | None = None) -> WebCorpusConfig:
        """The variant's curation run config: the base, then its overrides, living under this ablation
        (and encoding with ``tokenizer_model`` if given)."""
        # paths are set as given, not read as YAML (a folder named ``[x]`` would become a list)
        shared = [("tokenizer.model_path", str(tokenizer_model))] if tokenizer_model is not None else []
        where = [("runs_dir", str(self.root / "curation")), ("run_name", variant.name)]
        try:
            cfg = load_config(self.curation_config, [*self.curation_overrides, *variant.overrides, *shared, *where])
        except ConfigError as exc:
            raise ConfigError(f"variant {variant.name}: {exc}") from None
        if not cfg.decontaminate.enabled:
            raise ConfigError(f"variant {variant.name}: decontaminate.enabled=false would train on the evaluation text")
        return cfg


def load_ablation_config(path: str | Path | None) -> AblationConfig:
    """The ablation from YAML (every field has a default: no file runs the ladder on the bundled corpus)."""
    cfg = load(AblationConfig, {}, path, [])
    for variant in cfg.resolved_variants():  # every variant's run config is checked before any work starts
        cfg.curation(variant)
    return cfg
