"""fastText text classifiers trained by ``curation.training.classifiers``, and the stages that use them.

``quality_classifier`` scores every document with P(high quality) (DCLM's recipe: a fastText
model separating reference prose from boilerplate and link lists), writes the score to
``metadata["quality_score"]`` (dedup keeps the best-scored duplicate by it) and rejects by a
score threshold and/or a keep-top-fraction rule, the fraction taken per input shard.

``domain_classifier`` predicts ``finance`` or ``general``. Documents of untagged sources (domain
``untagged``) take the predicted domain; tagged documents keep their tag. Both get the
prediction and its confidence in their metadata, and ``domain_source`` (``tagged`` or
``classified``) says where the domain came from.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from datatrove.data import Document

from curation.core.document import UNTAGGED, stable_hash
from curation.core.stage import ShardStage, Stage, Verdict

LABEL_PREFIX = "__label__"
FASTTEXT_MAGIC = (793712314).to_bytes(4, "little")  # the first 4 bytes of every .bin/.ftz model
MAX_CHARS = 20_000  # beyond this a page's label does not change; fastText's cost grows with length

_PUNCT = re.compile(r"([.,!?;:()\[\]\"'/|<>=*#])")
_NEWLINE = re.compile(r"\s*\n\s*")
_SPACE = re.compile(r"[ \t\r\f\v]+")


def normalize(text: str) -> str:
    """One line of lower-cased tokens; punctuation split off and line breaks kept as a token.

    Line breaks matter: a link list or a navigation bar is many short lines, prose is few long
    ones, and fastText reads only tokens. Training and scoring both go through this function.
    """
    text = _PUNCT.sub(r" \1 ", text[:MAX_CHARS].lower())
    text = _NEWLINE.sub(" <nl> ", text.strip())
    return _SPACE.sub(" ", text).strip()


def card_path(model_path: str | Path) -> Path:
    """The JSON card beside a model: training data hash, hyperparameters, held-out metrics."""
    return Path(model_path).with_suffix(".json")


def check_model_file(path: str | Path) -> dict:
    """The model's card, after checking that the model is a fastText file; ValueError says why not.

    A config names its models and is validated many times (every API request, every load), so
    the check is remembered per file version (path, size, modification time of model and card):
    a validation costs two ``stat`` calls, and a replaced model or card is read again.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no fastText model at {path}")
    card = card_path(path)
    return copy.deepcopy(_checked_card(str(path), _version(path), _version(card)))


def loaded_fasttext(path: str | Path):
    """The fastText model at ``path``, loaded once per process while the file stays the same: a
    worker curates shard after shard, in two passes, and built each stage's models again for each
    (the language model and both classifiers: ~8 ms each, six loads a shard)."""
    path = Path(path)
    return _loaded_fasttext(str(path), _version(path))


@functools.lru_cache(maxsize=8)
def _loaded_fasttext(path: str, version: tuple[int, int] | None):
    from fasttext.FastText import _FastText  # quiet: fasttext.load_model prints a warning

    return _FastText(path)


def _version(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


@functools.lru_cache(maxsize=64)  # failures raise, and are not remembered
def _checked_card(path: str, model_version: tuple | None, card_version: tuple | None) -> dict:
    with open(path, "rb") as f:
        if f.read(4) != FASTTEXT_MAGIC:
            raise ValueError(f"{path} is not a fastText model")
    card = card_path(path)
    if not card.is_file():
        raise ValueError(f"no model card {card.name} beside {path} (python -m curation.training.classifiers writes both)")
    return json.loads(card.read_text())


@dataclass
class FastTextModel:
    path: Path

    def __post_init__(self):
        self.card = check_model_file(self.path)
        self._model = loaded_fasttext(self.path)
        self.labels = [label.removeprefix(LABEL_PREFIX) for label in self._model.get_labels()]

    def probabilities(self, text: str) -> dict[str, float]:
        labels, probs = self._model.predict(normalize(text), k=-1, threshold=0.0)
        out = {label.removeprefix(LABEL_PREFIX): min(1.0, float(p)) for label, p in zip(labels, probs)}
        return {label: out.get(label, 0.0) for label in self.labels}

    def predict(self, text: str) -> tuple[str, float]:
        probs = self.probabilities(text)
        label = max(sorted(probs), key=probs.__getitem__)
        return label, probs[label]


class QualityClassifier(ShardStage):
    """Keeps documents whose P(high quality) reaches ``threshold`` and ranks in the top fraction.

    ``keep_top_fraction`` is taken per input shard (a shard is the unit of work; a global cut
    would need a pass over the whole run first): of the shard's documents, the best
    ``ceil(fraction * n)`` by score are kept, ties broken by id hash so the cut is stable.
    """

    name = "quality_classifier"

    def __init__(self, model_path: str | Path, threshold: float | None = 0.5, keep_top_fraction: float | None = None,
                 score_field: str = "quality_score", positive_label: str = "high"):
        self.model_path = Path(model_path)
        self.threshold = threshold
        self.keep_top_fraction = keep_top_fraction
        self.score_field = score_field
        self.positive_label = positive_label
        self.model: FastTextModel | None = None

    def open(self) -> None:
        if self.model is None:
            self.model = FastTextModel(self.model_path)
            if self.positive_label not in self.model.labels:
                raise ValueError(f"{self.model_path} has labels {self.model.labels}, not {self.positive_label!r}")

    def score(self, doc: Document) -> float:
        self.open()
        return round(self.model.probabilities(doc.text)[self.positive_label], 6)

    def apply_shard(self, docs: list[Document]) -> list[Verdict]:
        verdicts: list[Verdict] = []
        for doc in docs:
            doc.metadata[self.score_field] = self.score(doc)
            below = self.threshold is not None and doc.metadata[self.score_field] < self.threshold
            verdicts.append((False, "quality_classifier_below_threshold") if below else True)
        if self.keep_top_fraction is not None:
            n_keep = math.ceil(self.keep_top_fraction * len(docs))
            ranked = sorted(range(len(docs)), key=lambda i: (-docs[i].metadata[self.score_field], stable_hash(docs[i].id)))
            for i in ranked[n_keep:]:
                if verdicts[i] is True:
                    verdicts[i] = (False, "quality_classifier_not_in_top_fraction")
        return verdicts


class DomainClassifier(Stage):
    """Gives untagged documents the predicted domain; tagged ones keep theirs.

    Every document gets ``domain_predicted``, ``domain_confidence`` (the model's probability of
    the domain the document ends up with) and ``domain_source``. An untagged document whose best
    probability is under ``min_confidence`` is rejected (``domain_uncertain``) rather than mixed
    into a domain it may not belong to. Counters record how often the model agrees with the tags.
    """

    name = "domain_classifier"

    def __init__(self, model_path: str | Path, min_confidence: float = 0.0):
        self.model_path = Path(model_path)
        self.min_confidence = min_confidence
        self.model: FastTextModel | None = None

    def open(self) -> None:
        if self.model is None:
            self.model = FastTextModel(self.model_path)

    def apply(self, doc: Document) -> Verdict:
        self.open()
        probs = self.model.probabilities(doc.text)
        label = max(sorted(probs), key=probs.__getitem__)
        doc.metadata["domain_predicted"] = label
        if doc.metadata["domain"] == UNTAGGED:
            if probs[label] < self.min_confidence:
                return False, "domain_uncertain"
            doc.metadata.update(domain=label, domain_source="classified", domain_confidence=round(probs[label], 6))
            self.count(f"classified_as:{label}")
            return True
        tag = doc.metadata["domain"]
        doc.metadata.update(domain_source="tagged", domain_confidence=round(probs.get(tag, 0.0), 6))
        self.count("tagged_agrees" if label == tag else "tagged_disagrees")
        return True
