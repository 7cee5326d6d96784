"""Text extraction's parameters: a run's ``extract`` section."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from configs.fields import Strict


class ExtractConfig(Strict):
    timeout_s: float = Field(5.0, gt=0, le=3600, description="CPU seconds of extraction per page (not wall time: the same under any load)")
    favour_precision: bool = True
    max_html_bytes: int = Field(2_000_000, gt=0, le=1 << 31)
    fast_trafilatura: bool = Field(
        True, description="trafilatura's costliest XPaths compiled, its element classes looked up in C: the same text, ~2x faster (curation.extraction.trafilatura_fast)"
    )
    engine: Literal["trafilatura", "resiliparse"] = Field("trafilatura", description="resiliparse: ~15x faster, different text (benchmarks.pipeline)")
