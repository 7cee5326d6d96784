"""The typed configuration of a curation run (``pipelines.config_loading`` reads it from YAML and overrides).

Every knob has a name and a default; each block's section is defined beside the block
(``curation/*/params.py``, ``tokenizer/params.py``) and composed here with where the run lives and
which Ray runs it. The defaults run on the bundled sample corpus.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pydantic import Field, ValidationInfo, field_validator, model_validator

from configs.fields import CHECK_FILES, ROOTS_PATH, WRITE_PATH, Strict, checking_files
from configs.overrides import ConfigError
from curation.dedup.params import DedupConfig
from curation.extraction.params import ExtractConfig
from curation.filters.params import (
    DecontaminateConfig,
    DomainClassifierConfig,
    LanguageConfig,
    PIIConfig,
    QualityConfig,
    URLFilterConfig,
)
from curation.mixing.params import MixConfig
from curation.readers.params import ReadConfig, SourceConfig
from tokenizer.params import ShardsConfig, TokenizerConfig

__all__ = ["CHECK_FILES", "ConfigError", "DedupConfig", "RayConfig", "SourceConfig", "WebCorpusConfig"]

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_CORPUS = PROJECT_ROOT / "data" / "sample_corpus"


def _bundled_sources() -> list[SourceConfig]:
    """Three shards of each domain tagged; the fourth of each and the real crawl untagged, as a crawl arrives."""
    return [
        SourceConfig(name=f"sample-{domain}", format="warc", domain=domain, paths=[str(SAMPLE_CORPUS / "warc" / f"{domain}-0000[0-2].warc.gz")])
        for domain in ("finance", "general")
    ] + [
        SourceConfig(name="sample-untagged", format="warc", domain=None, paths=[str(SAMPLE_CORPUS / "warc" / f"{d}-00003.warc.gz") for d in ("finance", "general")]),
        SourceConfig(name="iana-crawl", format="warc", domain=None, paths=[str(SAMPLE_CORPUS / "real_crawl" / "*.warc.gz")]),
    ]


class RayConfig(Strict):
    address: str | None = Field(None, description="a Ray cluster; default: $RAY_ADDRESS, else a local Ray")
    num_cpus: int | None = Field(None, gt=0, le=1 << 16, description="local Ray only; default: all cores")
    # What a worker holds grows with the tasks it has run (caches, the word tokenizer's lexemes, the
    # allocator's high-water mark); these bound a worker's memory by configuration, not by corpus size.
    worker_max_tasks: int | None = Field(None, ge=1, le=1 << 20, description="a worker process exits after this many tasks (Ray's max_calls); default: reused")
    task_memory_mb: int | None = Field(None, ge=1, le=1 << 30, description="memory each task reserves: Ray runs no more tasks on a node than its memory holds")


class WebCorpusConfig(Strict):
    run_name: str = Field("sample", pattern=r"^[A-Za-z0-9_.-]+$")
    runs_dir: str = Field("runs", json_schema_extra=WRITE_PATH)
    data_roots: list[str] | None = Field(
        None, description="folders every input must resolve inside, checked again as each file is opened (the service sets them)",
        json_schema_extra=ROOTS_PATH,
    )
    sources: list[SourceConfig] = Field(default_factory=_bundled_sources, min_length=1)
    read: ReadConfig = ReadConfig()
    url_filter: URLFilterConfig = URLFilterConfig()
    extract: ExtractConfig = ExtractConfig()
    language: LanguageConfig = LanguageConfig()
    decontaminate: DecontaminateConfig = DecontaminateConfig()  # issue 19
    quality: QualityConfig = QualityConfig()
    domain_classifier: DomainClassifierConfig = DomainClassifierConfig()
    pii: PIIConfig = PIIConfig()
    # a factory: building one at import would import datasketch and SciPy (its bands) into every Ray worker
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    mix: MixConfig = MixConfig()
    shards: ShardsConfig = ShardsConfig()
    tokenizer: TokenizerConfig = TokenizerConfig()
    ray: RayConfig = RayConfig()

    @field_validator("sources")
    @classmethod
    def _unique_source_names(cls, sources: list[SourceConfig]) -> list[SourceConfig]:
        names = [s.name for s in sources]
        if len(set(names)) != len(names):
            raise ValueError(f"source names must be unique, got {names}")
        return sources

    def domains(self) -> set[str]:
        """The domains documents can end up in: the sources' tags, and the classifier's labels if any source is untagged."""
        domains = {s.domain for s in self.sources if s.domain is not None}
        if any(s.domain is None for s in self.sources) and self.domain_classifier.enabled:
            domains |= set(self.domain_classifier.labels())
        return domains

    @model_validator(mode="after")
    def _mix_matches_sources(self, info: ValidationInfo) -> WebCorpusConfig:
        check_sections(self, checking_files(info))
        return self

    @property
    def run_dir(self):
        """A ``Path``, or a ``StorePath`` when ``runs_dir`` is a URL (``s3://bucket/runs``)."""
        from tokenizer.store_path import as_path

        return as_path(self.runs_dir) / self.run_name

    def fingerprint(self) -> str:
        """Hash of everything that shapes the output (not where the run lives or which Ray runs it)."""
        shaping = self.model_dump(mode="json", exclude={"runs_dir": True, "run_name": True, "ray": True, "data_roots": True, "dedup": {"partitions"}})
        return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:16]


def check_sections(cfg: WebCorpusConfig, check_files: bool) -> None:
    """The rules across sections, checked once per validation of a run config: untagged sources need
    the domain classifier, the mix names exactly the domains documents can end up in (with files
    checked: the classifier's labels, read when its model path was), shards need the mix."""
    untagged = [i for i, s in enumerate(cfg.sources) if s.domain is None]
    if untagged and not cfg.domain_classifier.enabled:
        raise ValueError(f"sources.{untagged[0]}.domain is null (untagged): that needs domain_classifier.enabled=true")
    if cfg.mix.enabled and not cfg.mix.natural and (check_files or not untagged):  # the classifier's labels come from its model card
        domains = cfg.domains()
        unknown = sorted(set(cfg.mix.targets) - domains)
        missing = sorted(domains - set(cfg.mix.targets))
        if unknown or missing:
            raise ValueError(
                "mix.targets must give a share for exactly the sources' domains "
                f"{sorted(domains)}: " + "; ".join(filter(None, [unknown and f"no source for {unknown}", missing and f"no share for {missing}"]))
            )
    if cfg.shards.enabled and not cfg.mix.enabled:
        raise ValueError("shards need mix: set mix.enabled=true (targets may equal the natural shares)")
