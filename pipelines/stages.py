"""The per-document stages of a web-corpus run, in order, built from its config."""

from __future__ import annotations

from curation.decode import DecodeStage
from curation.extract import TextExtraction
from curation.language import LanguageID
from curation.quality import QUALITY_FILTERS, quality_stage
from curation.stage import Stage
from pipelines.config import WebCorpusConfig


def build_stages(cfg: WebCorpusConfig) -> list[Stage]:
    stages: list[Stage] = [
        DecodeStage(max_document_bytes=cfg.read.max_document_bytes),
        TextExtraction(**cfg.extract.model_dump()),
    ]
    if cfg.language.enabled:
        stages.append(LanguageID(cfg.language.languages, cfg.language.threshold))
    for name in QUALITY_FILTERS:  # Gopher repetition, Gopher quality, C4, FineWeb: FineWeb's order
        params = getattr(cfg.quality, name).model_dump()
        if params.pop("enabled"):
            stages.append(quality_stage(name, **params))
    return stages


def stage_names(cfg: WebCorpusConfig) -> list[str]:
    """Stage names in order, without building (and loading models for) the stages."""
    names = ["read", "extract"] + (["language"] if cfg.language.enabled else [])
    names += [n for n in QUALITY_FILTERS if getattr(cfg.quality, n).enabled]
    return names + (["dedup"] if cfg.dedup.enabled else []) + (["mix"] if cfg.shards.enabled else [])
