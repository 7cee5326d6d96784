"""The typed configuration of a curation run (``pipelines.config_loading`` reads it from YAML and overrides).

Every knob has a name and a default here; the defaults run on the bundled sample corpus and
follow FineWeb's published pipeline (English, lid score 0.65, Gopher/C4/FineWeb filters with
datatrove's defaults, C4's terminal-punctuation rule off as in FineWeb).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from curation.core.document import UNTAGGED
from pipelines.decontaminate_config import DecontaminateConfig  # the decontaminate section

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_CORPUS = PROJECT_ROOT / "data" / "sample_corpus"
CLASSIFIERS = PROJECT_ROOT / "data" / "classifiers"


class ConfigError(ValueError):
    """A configuration that cannot run; the message names the offending field."""


# Path-valued fields say so in their schema, and nothing else may hold a path: the service confines
# every field marked "read" (an input: it must resolve inside a data root, each file a glob or
# folder yields included) and sets every "write" and "roots" field itself (service.confinement).
READ_PATH = {"path": "read"}
WRITE_PATH = {"path": "write"}
# Files are opened while validating (a classifier's model card, the domains it labels) only when
# asked: the API validates a request's shape first and opens files only after confining its paths,
# so an error message can never tell whether a file outside the data roots exists.
CHECK_FILES = {"check_files": True}


def _checking_files(info: ValidationInfo) -> bool:
    return bool(info.context and info.context.get("check_files"))


class Strict(BaseModel):
    # NaN and infinities make no sense anywhere in a run config (a NaN share passes any sum check;
    # an infinite timeout disables the per-page CPU limit)
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


def _no_nul(path: str) -> str:
    if "\x00" in path:
        raise ValueError("a path may not contain a NUL byte")
    return path


class SourceConfig(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    format: Literal["warc", "jsonl", "parquet", "html"]
    paths: list[str] = Field(min_length=1, max_length=10_000, description="files, globs or (for html) folders", json_schema_extra=READ_PATH)
    domain: str | None = Field(pattern=r"^[A-Za-z0-9_-]+$", description="null: untagged, the domain classifier assigns one")
    content_type: Literal["html", "text"] = "html"
    text_field: str = "text"
    url_field: str = "url"
    id_field: str | None = None

    @field_validator("paths")
    @classmethod
    def _paths(cls, paths: list[str]) -> list[str]:
        return [_no_nul(p) for p in paths]

    @field_validator("domain")
    @classmethod
    def _not_reserved(cls, domain: str | None) -> str | None:
        if domain == UNTAGGED:
            raise ValueError(f"{UNTAGGED!r} is reserved; write null for a source without a domain")
        return domain


def _bundled_sources() -> list[SourceConfig]:
    """Three shards of each domain tagged; the fourth of each and the real crawl untagged, as a crawl arrives."""
    return [
        SourceConfig(name=f"sample-{domain}", format="warc", domain=domain, paths=[str(SAMPLE_CORPUS / "warc" / f"{domain}-0000[0-2].warc.gz")])
        for domain in ("finance", "general")
    ] + [
        SourceConfig(name="sample-untagged", format="warc", domain=None, paths=[str(SAMPLE_CORPUS / "warc" / f"{d}-00003.warc.gz") for d in ("finance", "general")]),
        SourceConfig(name="iana-crawl", format="warc", domain=None, paths=[str(SAMPLE_CORPUS / "real_crawl" / "*.warc.gz")]),
    ]


class URLFilterConfig(Strict):
    """datatrove's URLFilter (offline) plus a scheme rule and our own block lists."""

    enabled: bool = True
    blocked_domains: list[str] = Field(default_factory=list, description="hosts rejected with their subdomains")
    blocked_urls: list[str] = Field(default_factory=list)
    blocked_words: list[str] = Field(default_factory=list, description="added to datatrove's banned URL words")
    allowed_schemes: list[str] | None = Field(default_factory=lambda: ["http", "https", "file"], description="None allows any")
    datatrove_word_lists: bool = True
    ut1_blocklist: bool = Field(False, description="datatrove's UT1 domain list: 120 MB unpacked per worker")
    soft_word_threshold: int = Field(2, ge=1, le=1000)


def _check_model(path: str, info: ValidationInfo) -> str:
    _no_nul(path)
    if _checking_files(info):
        from curation.filters.classifier import check_model_file

        check_model_file(path)
    return path


class QualityClassifierConfig(Strict):
    """fastText P(high quality); writes metadata[dedup.score_field] for dedup's choice of survivor."""

    enabled: bool = True
    model_path: str = Field(str(CLASSIFIERS / "quality.ftz"), json_schema_extra=READ_PATH)
    threshold: float | None = Field(0.5, ge=0, le=1, description="reject below this P(high); None: no threshold")
    keep_top_fraction: float | None = Field(None, gt=0, le=1, description="keep the best fraction of each input shard")

    @field_validator("model_path")
    @classmethod
    def _model_exists(cls, path: str, info: ValidationInfo) -> str:
        return _check_model(path, info)


class DomainClassifierConfig(Strict):
    """fastText finance/general: untagged documents take its prediction; tagged ones keep their tag."""

    enabled: bool = True
    model_path: str = Field(str(CLASSIFIERS / "domain.ftz"), json_schema_extra=READ_PATH)
    min_confidence: float = Field(0.0, ge=0, le=1, description="reject untagged documents the model is less sure of")

    @field_validator("model_path")
    @classmethod
    def _model_exists(cls, path: str, info: ValidationInfo) -> str:
        return _check_model(path, info)

    def labels(self) -> list[str]:
        from curation.filters.classifier import check_model_file

        return check_model_file(self.model_path)["labels"]


class PIIConfig(Strict):
    """Redact (never reject) emails, IP addresses and phone numbers; counted per type."""

    enabled: bool = True
    emails: bool = True
    ips: bool = True
    phones: bool = True
    only_public_ips: bool = True


class ReadConfig(Strict):
    max_document_bytes: int = Field(5_000_000, gt=0, le=1 << 31)
    warc_reader: Literal["warcio", "fastwarc"] = Field("warcio", description="fastwarc: the same documents, less CPU (curation.readers.fastwarc_reader)")


class ExtractConfig(Strict):
    timeout_s: float = Field(5.0, gt=0, le=3600, description="CPU seconds of extraction per page (not wall time: the same under any load)")
    favour_precision: bool = True
    max_html_bytes: int = Field(2_000_000, gt=0, le=1 << 31)
    engine: Literal["trafilatura", "resiliparse"] = Field("trafilatura", description="resiliparse: ~15x faster, different text (benchmarks.pipeline)")


class LanguageConfig(Strict):
    enabled: bool = True
    languages: list[str] | None = Field(default_factory=lambda: ["en"], description="None keeps every language")
    threshold: float = Field(0.65, ge=0, le=1)


class GopherRepetitionConfig(Strict):
    enabled: bool = True
    dup_line_frac: float | None = 0.3
    dup_para_frac: float | None = 0.3
    dup_line_char_frac: float | None = 0.2
    dup_para_char_frac: float | None = 0.2
    top_n_grams: list[tuple[int, float]] = [(2, 0.2), (3, 0.18), (4, 0.16)]
    dup_n_grams: list[tuple[int, float]] = [(5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10)]


class GopherQualityConfig(Strict):
    enabled: bool = True
    min_doc_words: int | None = 50
    max_doc_words: int | None = 100_000
    min_avg_word_length: int | None = 3
    max_avg_word_length: int | None = 10
    max_symbol_word_ratio: float | None = 0.1
    max_bullet_lines_ratio: float | None = 0.9
    max_ellipsis_lines_ratio: float | None = 0.3
    max_non_alpha_words_ratio: float | None = 0.8
    min_stop_words: int | None = 2


class C4QualityConfig(Strict):
    enabled: bool = True
    filter_no_terminal_punct: bool = False  # FineWeb turns this C4 rule off
    min_num_sentences: int = 5
    min_words_per_line: int = 3
    max_word_length: int = 1000
    filter_lorem_ipsum: bool = True
    filter_javascript: bool = True
    filter_curly_bracket: bool = True
    filter_policy: bool = True


class FineWebQualityConfig(Strict):
    enabled: bool = True
    line_punct_thr: float = 0.12
    line_punct_exclude_zero: bool = False
    short_line_thr: float = 0.67
    short_line_length: int = 30
    char_duplicates_ratio: float = 0.01
    new_line_ratio: float = 0.3


class QualityConfig(Strict):
    gopher_repetition: GopherRepetitionConfig = GopherRepetitionConfig()
    gopher_quality: GopherQualityConfig = GopherQualityConfig()
    c4_quality: C4QualityConfig = C4QualityConfig()
    fineweb_quality: FineWebQualityConfig = FineWebQualityConfig()
    classifier: QualityClassifierConfig = QualityClassifierConfig()


class DedupConfig(Strict):
    """Exact then MinHash-LSH near-duplicate removal across the whole run."""

    enabled: bool = True
    ngram: int = Field(5, ge=1, le=1000, description="word n-gram shingles")
    num_perm: int = Field(128, ge=8, le=1024)
    threshold: float = Field(0.8, gt=0, lt=1, description="Jaccard similarity at which documents are duplicates")
    verify: bool = Field(True, description="keep an LSH candidate pair only if its signatures agree on >= threshold")
    verify_margin: float | None = Field(
        None, ge=0, lt=1, description="accept signature agreement this far below threshold; default: one standard error of the estimate there"
    )
    candidate_threshold: float | None = Field(
        None, gt=0, lt=1, description="similarity the LSH bands aim at; default: threshold - 0.15 with verify, else threshold"
    )
    bands: int | None = Field(None, ge=1, le=1024, description="LSH bands; default: datasketch's optimum for candidate_threshold")
    rows: int | None = Field(None, ge=1, le=1024, description="rows per band; default: datasketch's optimum")
    seed: int = 1
    score_field: str = Field("quality_score", description="metadata field ranking duplicates (higher survives)")
    rows_per_partition: int = Field(4_000_000, gt=0, le=1 << 40, description="band rows per shuffle partition: bounds worker memory")
    partitions: int | None = Field(None, ge=1, le=1_000_000, description="shuffle partitions; default: enough for rows_per_partition, at least one per CPU")
    previous_indexes: list[str] = Field(
        default_factory=list, max_length=1000, description="dedup/index folders of finished runs: also remove duplicates of their corpora",
        json_schema_extra=READ_PATH,
    )

    @field_validator("previous_indexes")
    @classmethod
    def _paths(cls, paths: list[str]) -> list[str]:
        return [_no_nul(p) for p in paths]

    @model_validator(mode="after")
    def _resolve_bands(self) -> DedupConfig:
        if (self.bands is None) != (self.rows is None):
            raise ValueError("set both dedup.bands and dedup.rows, or neither")
        if self.verify_margin is None:
            # the agreement of 128 minima estimates J with standard error sqrt(J(1-J)/num_perm):
            # a hard cut at the threshold would miss half of the pairs that sit right on it
            margin = round(math.sqrt(self.threshold * (1 - self.threshold) / self.num_perm), 4)
            object.__setattr__(self, "verify_margin", margin)
        if self.candidate_threshold is None:
            candidate = max(0.05, round(self.threshold - 0.15, 4)) if self.verify else self.threshold
            object.__setattr__(self, "candidate_threshold", candidate)
        if self.bands is None:
            from curation.dedup.minhash import lsh_bands

            bands, rows = lsh_bands(self.candidate_threshold, self.num_perm)
            object.__setattr__(self, "bands", bands)
            object.__setattr__(self, "rows", rows)
        if self.bands * self.rows > self.num_perm:
            raise ValueError(f"dedup.bands x dedup.rows = {self.bands * self.rows} exceeds dedup.num_perm = {self.num_perm}")
        return self


class MixConfig(Strict):
    """Domain mixing in tokens (BloombergGPT's 51% finance / 49% general by default)."""

    enabled: bool = True
    targets: dict[str, float] = Field(default_factory=lambda: {"finance": 0.51, "general": 0.49})
    natural: bool = Field(False, description="every curated document once, each domain at its own share (targets unused): "
                          "for an ablation, where a fixed ratio would cut each variant differently")
    total_tokens: int | None = Field(None, gt=0, le=10**16, description="token budget; default: the largest mix that repeats nothing")
    repeat_limit: float = Field(4.0, ge=1, le=1e6, description="warn when a domain must be repeated more epochs than this")
    seed: int = 1

    @field_validator("targets")
    @classmethod
    def _shares(cls, targets: dict[str, float]) -> dict[str, float]:
        if not targets:
            raise ValueError("give at least one domain's share")
        if any(v < 0 for v in targets.values()):
            raise ValueError(f"shares must not be negative, got {targets}")
        if abs(sum(targets.values()) - 1) > 1e-6:
            raise ValueError(f"shares must sum to 1, they sum to {sum(targets.values()):.6f}")
        return dict(sorted(targets.items()))


class ShardsConfig(Strict):
    enabled: bool = True
    shard_tokens: int = Field(1_000_000, gt=0, le=1 << 40, description="tokens per shard (a shard closes after the document that reaches it)")
    per_domain: bool = Field(False, description="one set of shards per domain, for mixing at training time")
    seed: int = 1


class TokenizerConfig(Strict):
    model_path: str | None = Field(None, description="an existing sentencepiece model; skips training", json_schema_extra=READ_PATH)

    @field_validator("model_path")
    @classmethod
    def _path(cls, path: str | None) -> str | None:
        return path if path is None else _no_nul(path)
    vocab_size: int = Field(8192, ge=256, le=1 << 20)
    model_type: Literal["bpe", "unigram"] = "bpe"
    character_coverage: float = Field(0.9995, gt=0, le=1)
    byte_fallback: bool = True
    sample_rate: float = Field(0.5, gt=0, le=1, description="fraction of records (by id hash) sampled for training")
    sample_chars: int = Field(20_000_000, gt=0, le=1 << 40, description="text budget of the sample, split evenly over domains")


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
        json_schema_extra={"path": "roots"},
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
    dedup: DedupConfig = DedupConfig()
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
        untagged = [i for i, s in enumerate(self.sources) if s.domain is None]
        if untagged and not self.domain_classifier.enabled:
            raise ValueError(f"sources.{untagged[0]}.domain is null (untagged): that needs domain_classifier.enabled=true")
        if self.mix.enabled and not self.mix.natural and (_checking_files(info) or not untagged):  # the classifier's labels come from its model card
            domains = self.domains()
            unknown = sorted(set(self.mix.targets) - domains)
            missing = sorted(domains - set(self.mix.targets))
            if unknown or missing:
                raise ValueError(
                    "mix.targets must give a share for exactly the sources' domains "
                    f"{sorted(domains)}: " + "; ".join(filter(None, [unknown and f"no source for {unknown}", missing and f"no share for {missing}"]))
                )
        if self.shards.enabled and not self.mix.enabled:
            raise ValueError("shards need mix: set mix.enabled=true (targets may equal the natural shares)")
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
