"""The registry of a web-corpus run: its phases and its stages, each listed once, in order.

The CLI, the progress file, the funnel and the service read this module; no other module spells
a phase's progress labels or the list of stages. A phase is a set of Ray steps (the labels
``progress.json`` shows); a stage is one line of the funnel. The per-document stages all run
inside the ``curate`` phase, shard by shard; ``dedup`` and ``mix`` are phases of their own.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from curation.core.stage import Stage
from curation.extraction.decode import DecodeStage
from curation.extraction.extract import TextExtraction
from curation.filters.classifier import DomainClassifier, QualityClassifier
from curation.filters.decontamination import Decontaminate
from curation.filters.language import LanguageID
from curation.filters.pii import PIIRedaction
from curation.filters.quality import QUALITY_FILTERS, quality_stage
from curation.filters.url_filter import URLFilterStage
from pipelines.config import WebCorpusConfig


@dataclass(frozen=True)
class Phase:
    """A step of the run on Ray; ``steps`` are the progress labels of the Ray steps it always runs."""

    name: str
    steps: tuple[str, ...]

    def step(self, what: str) -> str:
        """The progress label of one of the phase's steps (``dedup: buckets``)."""
        return f"{self.name}: {what}"

    def owns_step(self, label: str) -> bool:
        """Also the steps it runs only sometimes (verification) or a varying number of (star rounds)."""
        return label in self.steps or label.startswith(f"{self.name}: ")


TOKENIZER = Phase("tokenizer", ("tokenizer sample",))
CURATE = Phase("curate", ("curate",))
DEDUP = Phase("dedup", tuple(f"dedup: {s}" for s in ("signatures", "buckets", "labels", "survivors", "apply")))
MIX = Phase("mix", ("mix: encode", "mix: write shards", "mix: rejected"))
PHASES = (TOKENIZER, CURATE, DEDUP, MIX)
# phases that write one funnel per input shard, ``stats/<phase>/<shard>.json``
SHARD_PHASES = (CURATE, DEDUP)

# The stages whose figures the funnel reads by name (extracted tokens, domain assignment, PII counts)
EXTRACT, DOMAIN_CLASSIFIER, PII = "extract", "domain_classifier", "pii"
# The per-document stages the curate pass runs again instead of replaying what the tokenizer's
# sample pass did (``curation.core.replay``): decoding is cheap, and its effect is the whole page
NOT_REPLAYED = ("read",)

# A per-document stage as a Ray task receives it: its name and the parameters that build it.
StagePlan = list[tuple[str, dict]]


@dataclass(frozen=True)
class StageSpec:
    name: str
    phase: Phase
    enabled: Callable[[WebCorpusConfig], bool]
    params: Callable[[WebCorpusConfig], dict] = lambda cfg: {}
    build: Callable[..., Stage] | None = None  # per-document stages: called with ``params``


def _find(cfg: WebCorpusConfig, dotted: str):
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _section(dotted: str, exclude: frozenset = frozenset({"enabled"})) -> Callable[[WebCorpusConfig], dict]:
    """A stage's parameters: its config section's fields (but ``enabled``)."""
    return lambda cfg: _find(cfg, dotted).model_dump(exclude=set(exclude))


def _enabled(dotted: str) -> Callable[[WebCorpusConfig], bool]:
    return lambda cfg: _find(cfg, dotted).enabled


def _quality_classifier(cfg: WebCorpusConfig) -> dict:
    qc = cfg.quality.classifier
    return {"model_path": qc.model_path, "threshold": qc.threshold, "keep_top_fraction": qc.keep_top_fraction, "score_field": cfg.dedup.score_field}


# The URL filter needs only the URL, so it runs before the costly extraction. The heuristic
# filters run in FineWeb's order; the classifiers score text that the cheap heuristics already let
# through. PII is redacted last, on the text that goes on, and before dedup, so pages that differ
# only in an address or a phone number are still found to be duplicates.
STAGES: tuple[StageSpec, ...] = (
    StageSpec("read", CURATE, lambda cfg: True, lambda cfg: {"max_document_bytes": cfg.read.max_document_bytes}, DecodeStage),
    StageSpec("url_filter", CURATE, _enabled("url_filter"), _section("url_filter"), URLFilterStage),
    StageSpec(EXTRACT, CURATE, lambda cfg: True, _section("extract", frozenset()), TextExtraction),
    StageSpec("language", CURATE, _enabled("language"), _section("language"), LanguageID),
    # before every filter an ablation may switch off: each variant drops the same evaluation-text documents
    StageSpec("decontaminate", CURATE, _enabled("decontaminate"), _section("decontaminate"), Decontaminate),
    *(StageSpec(n, CURATE, _enabled(f"quality.{n}"), _section(f"quality.{n}"), functools.partial(quality_stage, n)) for n in QUALITY_FILTERS),
    StageSpec("quality_classifier", CURATE, _enabled("quality.classifier"), _quality_classifier, QualityClassifier),
    StageSpec(DOMAIN_CLASSIFIER, CURATE, _enabled("domain_classifier"), _section("domain_classifier"), DomainClassifier),
    StageSpec(PII, CURATE, _enabled("pii"), _section("pii"), PIIRedaction),
    StageSpec("dedup", DEDUP, _enabled("dedup")),
    StageSpec("mix", MIX, _enabled("shards")),
)
_BY_NAME = {spec.name: spec for spec in STAGES}


def stage_names(cfg: WebCorpusConfig) -> list[str]:
    """Every enabled stage of the run, in funnel order, without building (and loading models for) any."""
    return [spec.name for spec in STAGES if spec.enabled(cfg)]


def phase_of(stage: str) -> Phase:
    return _BY_NAME[stage].phase


def stage_plan(cfg: WebCorpusConfig) -> StagePlan:
    """The enabled per-document stages with their parameters: what a curate task needs of the config."""
    return [(spec.name, spec.params(cfg)) for spec in STAGES if spec.phase is CURATE and spec.enabled(cfg)]


def build(plan: StagePlan) -> list[Stage]:
    return [_BY_NAME[name].build(**params) for name, params in plan]


def build_stages(cfg: WebCorpusConfig) -> list[Stage]:
    return build(stage_plan(cfg))
