"""A source's and the reader's parameters: what a run's ``sources`` and ``read`` sections hold."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from configs.fields import READ_PATH, Strict, no_nul
from curation.core.document import UNTAGGED


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
        return [no_nul(p) for p in paths]

    @field_validator("domain")
    @classmethod
    def _not_reserved(cls, domain: str | None) -> str | None:
        if domain == UNTAGGED:
            raise ValueError(f"{UNTAGGED!r} is reserved; write null for a source without a domain")
        return domain


class ReadConfig(Strict):
    max_document_bytes: int = Field(5_000_000, gt=0, le=1 << 31)
    warc_reader: Literal["warcio", "fastwarc"] = Field("fastwarc", description="fastwarc (default): the same documents as warcio with less CPU, handing a file to warcio where they would differ (curation.readers.fastwarc_reader)")
    count_html_tokens: bool = Field(
        False,
        description="count the tokens of every HTML record as it arrived (the raw-record tokens: the tokens in of every stage up to "
        "extraction, and retention.tokens_vs_raw), exactly. Off by default: on a web crawl the markup is ~11x the extracted text's "
        "tokens and counting it is ~12% of a run's CPU (~25% on the fast path), while the headline retention (tokens_vs_extracted, "
        "FineWeb's and DCLM's figure) is against the extracted text, which is always counted. Text records (jsonl, parquet) are "
        "always counted",
    )
