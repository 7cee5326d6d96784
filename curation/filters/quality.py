"""Quality stages: datatrove's Gopher, C4 and FineWeb heuristic filters, each a stage of its own.

They run offline: the word and sentence splitting they need comes from spaCy's blank language
pipelines (no model download), C4 splits on lines (its default, no nltk punkt), and C4's bad-words
list is not used (datatrove downloads it; ``C4BadWordsFilter`` is left out).
"""

from __future__ import annotations

from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import BaseFilter

from curation.core.stage import Stage, Verdict
from curation.filters.c4_quality import FastC4QualityFilter
from curation.filters.fineweb_quality import FastFineWebQualityFilter
from curation.filters.gopher_quality import FastGopherQualityFilter
from curation.filters.gopher_repetition import FastGopherRepetitionFilter
from curation.filters.words import shared_word_tokenizer


class DatatroveFilterStage(Stage):
    """Any datatrove ``BaseFilter`` as a stage: its own reason strings become the funnel's."""

    def __init__(self, name: str, datatrove_filter: BaseFilter):
        self.name = name
        self.filter = datatrove_filter

    def apply(self, doc: Document) -> Verdict:
        return self.filter.filter(doc)


QUALITY_FILTERS: dict[str, type[BaseFilter]] = {
    "gopher_repetition": FastGopherRepetitionFilter,  # datatrove's decisions, faster (curation.filters.gopher_repetition)
    "gopher_quality": FastGopherQualityFilter,  # per-word checks in C (curation.filters.gopher_quality)
    "c4_quality": FastC4QualityFilter,  # counts sentences only when it must (curation.filters.c4_quality)
    "fineweb_quality": FastFineWebQualityFilter,  # splits words only when it must (curation.filters.fineweb_quality)
}


# the filters that split words: given one tokenizer, the Gopher pair splits each document once
# (curation.filters.words); FineWeb sees the text C4 rewrote, and splits it only when it must
WORD_SPLITTING = ("gopher_repetition", "gopher_quality", "fineweb_quality")


def quality_stage(name: str, **params) -> DatatroveFilterStage:
    """Build the named quality stage; ``params`` are the datatrove filter's own arguments."""
    if name in WORD_SPLITTING and "language" not in params:
        params["language"] = shared_word_tokenizer("en")
    return DatatroveFilterStage(name, QUALITY_FILTERS[name](**params))
