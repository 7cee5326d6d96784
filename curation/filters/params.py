"""The filters' parameters: a run's ``url_filter``, ``language``, ``decontaminate``, ``quality``,
``domain_classifier`` and ``pii`` sections. The defaults follow FineWeb's published pipeline
(English, lid score 0.65, Gopher/C4/FineWeb filters with datatrove's defaults, C4's
terminal-punctuation rule off as in FineWeb).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from configs.fields import READ_PATH, Strict, checking_files, no_nul

DATA = Path(__file__).resolve().parents[2] / "data"
CLASSIFIERS = DATA / "classifiers"
EVAL_TEXT = DATA / "eval"


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
    no_nul(path)
    if checking_files(info):
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
    # the domains the model labels, from the card read when its path was checked: the run's mix
    # is checked against them without opening the card again
    _labels: list[str] | None = PrivateAttr(None)

    @field_validator("model_path")
    @classmethod
    def _no_nul(cls, path: str) -> str:
        return no_nul(path)

    @model_validator(mode="after")
    def _model_exists(self, info: ValidationInfo) -> DomainClassifierConfig:
        if checking_files(info):
            from curation.filters.classifier import check_model_file

            try:
                self._labels = check_model_file(self.model_path)["labels"]
            except ValueError as exc:
                raise ValueError(f"domain_classifier.model_path: {exc}") from None
        return self

    def labels(self) -> list[str]:
        if self._labels is not None:
            return self._labels
        from curation.filters.classifier import check_model_file

        return check_model_file(self.model_path)["labels"]


class PIIConfig(Strict):
    """Redact (never reject) emails, IP addresses and phone numbers; counted per type."""

    enabled: bool = True
    emails: bool = True
    ips: bool = True
    phones: bool = True
    only_public_ips: bool = True


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


def _bundled_eval_text() -> list[str]:
    return [str(EVAL_TEXT / f"{domain}.jsonl") for domain in ("finance", "general")]


class DecontaminateConfig(Strict):
    """Remove documents sharing a word n-gram with the evaluation text (GPT-3's and datatrove's 13)."""

    enabled: bool = True
    ngram: int = Field(13, ge=1, le=1000, description="word n-gram length; shorter matches everyday phrases")
    eval_paths: list[str] = Field(
        default_factory=_bundled_eval_text,
        description="JSON-lines files with a `text` field; each file's name (without extensions) names its evaluation set",
        json_schema_extra=READ_PATH,
    )

    @field_validator("eval_paths")
    @classmethod
    def _readable_and_distinct(cls, paths: list[str], info: ValidationInfo) -> list[str]:
        from curation.filters.decontamination import eval_set_name

        paths = [no_nul(p) for p in paths]
        # whether a file exists is told only once its path is confined (CHECK_FILES)
        missing = [p for p in paths if "://" not in p and not Path(p).is_file()] if checking_files(info) else []
        if missing:
            raise ValueError(f"evaluation file(s) not found: {missing}")
        names = [eval_set_name(p) for p in paths]
        if len(set(names)) != len(names):
            raise ValueError(f"evaluation files must have distinct names (they name the sets), got {names}")
        return paths

    @model_validator(mode="after")
    def _something_to_check(self) -> DecontaminateConfig:
        if self.enabled and not self.eval_paths:
            raise ValueError("decontaminate.eval_paths is empty: give the evaluation files, or set decontaminate.enabled=false")
        return self
