"""The per-document stages of a web-corpus run, in order, built from its config."""

from __future__ import annotations

from curation.core.stage import Stage
from curation.extraction.decode import DecodeStage
from curation.extraction.extract import TextExtraction
from curation.filters.classifier import DomainClassifier, QualityClassifier
from curation.filters.language import LanguageID
from curation.filters.pii import PIIRedaction
from curation.filters.quality import QUALITY_FILTERS, quality_stage
from curation.filters.url_filter import URLFilterStage
from pipelines.config import WebCorpusConfig


def build_stages(cfg: WebCorpusConfig) -> list[Stage]:
    """read, url_filter, extract, language, the heuristic filters, quality_classifier, domain_classifier, pii.

    The URL filter needs only the URL, so it runs before the costly extraction. The classifiers
    score text that the cheap heuristics already let through. PII is redacted last, on the text
    that goes on, and before dedup, so pages that differ only in an address or a phone number are
    still found to be duplicates.
    """
    stages: list[Stage] = [DecodeStage(max_document_bytes=cfg.read.max_document_bytes)]
    if cfg.url_filter.enabled:
        stages.append(URLFilterStage(**cfg.url_filter.model_dump(exclude={"enabled"})))
    stages.append(TextExtraction(**cfg.extract.model_dump()))
    if cfg.language.enabled:
        stages.append(LanguageID(cfg.language.languages, cfg.language.threshold))
    for name in QUALITY_FILTERS:  # Gopher repetition, Gopher quality, C4, FineWeb: FineWeb's order
        params = getattr(cfg.quality, name).model_dump()
        if params.pop("enabled"):
            stages.append(quality_stage(name, **params))
    qc = cfg.quality.classifier
    if qc.enabled:
        stages.append(QualityClassifier(qc.model_path, qc.threshold, qc.keep_top_fraction, score_field=cfg.dedup.score_field))
    if cfg.domain_classifier.enabled:
        stages.append(DomainClassifier(cfg.domain_classifier.model_path, cfg.domain_classifier.min_confidence))
    if cfg.pii.enabled:
        stages.append(PIIRedaction(**cfg.pii.model_dump(exclude={"enabled"})))
    return stages


def stage_names(cfg: WebCorpusConfig) -> list[str]:
    """Stage names in order, without building (and loading models for) the stages."""
    names = ["read"] + (["url_filter"] if cfg.url_filter.enabled else []) + ["extract"]
    names += ["language"] if cfg.language.enabled else []
    names += [n for n in QUALITY_FILTERS if getattr(cfg.quality, n).enabled]
    names += ["quality_classifier"] if cfg.quality.classifier.enabled else []
    names += ["domain_classifier"] if cfg.domain_classifier.enabled else []
    names += ["pii"] if cfg.pii.enabled else []
    return names + (["dedup"] if cfg.dedup.enabled else []) + (["mix"] if cfg.shards.enabled else [])
