"""The ``decontaminate`` section of a curation run's config (its own module: ``pipelines.config``
is being split, and this section only needs to be named there once)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

EVAL_TEXT = Path(__file__).resolve().parents[1] / "data" / "eval"


def _bundled_eval_text() -> list[str]:
    return [str(EVAL_TEXT / f"{domain}.jsonl") for domain in ("finance", "general")]


class DecontaminateConfig(BaseModel):
    """Remove documents sharing a word n-gram with the evaluation text (GPT-3's and datatrove's 13)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    enabled: bool = True
    ngram: int = Field(13, ge=1, le=1000, description="word n-gram length; shorter matches everyday phrases")
    eval_paths: list[str] = Field(
        default_factory=_bundled_eval_text,
        description="JSON-lines files with a `text` field; each file's name (without extensions) names its evaluation set",
        json_schema_extra={"path": "read"},
    )

    @field_validator("eval_paths")
    @classmethod
    def _readable_and_distinct(cls, paths: list[str]) -> list[str]:
        from curation.filters.decontamination import eval_set_name

        missing = [p for p in paths if "://" not in p and not Path(p).is_file()]
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
