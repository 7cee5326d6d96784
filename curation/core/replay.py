"""Stages that remember: what a stage did to a document in an earlier pass is replayed, not redone.

The tokenizer's sample pass runs the run's stages over a sample of each shard (half its records by
default) before the shard is curated, so the tokenizer learns from text that survives curation.
Without this, the curate pass did all of that work again for every sampled record: each
extraction, language ID, every filter and classifier. Each stage is deterministic for a given
document and config (extraction's timeout counts CPU time, not the wall clock), so what it did in
the sample pass (its verdict, the text it produced, the metadata it set or removed, its counters)
is what it would do again; the curate pass replays it and runs only the records the sample left
out. A stage that decides over the whole shard (``ShardStage``) is never replayed: its verdict
depends on the other documents.

Between the two passes the effects wait in a file per shard (``save_effects``, ``load_effects``).
"""

from __future__ import annotations

import logging
import pickle
import time
from collections import Counter

from datatrove.data import Document

from curation.core.stage import ShardStage, Stage, Verdict
from tokenizer.files import atomic_write_bytes

logger = logging.getLogger(__name__)

# what one stage did to one document: verdict, new text (None: unchanged), metadata set, metadata removed, counters,
# and the seconds it took (credited to the stage in the funnel of the pass that replays it)
Effect = tuple[Verdict, "str | None", dict, list, "dict | None", float]


class Replaying(Stage):
    """Wraps a stage: replays ``known`` effects by document id, and (``record``) records the ones it computes."""

    def __init__(self, stage: Stage, known: dict[str, Effect] | None = None, record: bool = False):
        if isinstance(stage, ShardStage):
            raise TypeError(f"{stage.name}: a shard-level stage's verdicts cannot be replayed")
        self.stage = stage
        self.name = stage.name
        self.known = known or {}
        self.recorded: dict[str, Effect] | None = {} if record else None
        self.replayed = 0
        self.replayed_time_s = 0.0  # what the replayed results cost when they were computed
        self.prepare_batch = stage.prepare_batch
        self._prepared_s: dict[str, float] = {}  # by document id: its share of the stage's ``prepare``

    def open(self) -> None:
        self.stage.open()

    def close(self) -> None:
        self.stage.close()

    def prepare(self, docs: list[Document]) -> None:
        todo = [d for d in docs if d.id not in self.known]  # replayed documents need no work
        self._prepared_s.clear()
        if not todo:
            return
        start = time.perf_counter()
        self.stage.prepare(todo)
        share = (time.perf_counter() - start) / len(todo)
        self._prepared_s = {d.id: share for d in todo}

    def apply(self, doc: Document) -> Verdict:
        effect = self.known.get(doc.id)
        if effect is not None:
            self.replayed += 1
            verdict, text, changed, removed, counters = effect[:5]
            self.replayed_time_s += effect[5] if len(effect) > 5 else 0.0  # a file an older version left to a resumed run
            if text is not None:
                doc.text = text
            doc.metadata.update(changed)
            for key in removed:
                doc.metadata.pop(key, None)
            if counters:
                self.counters = Counter(counters)
            return verdict
        text_before, metadata_before = doc.text, dict(doc.metadata)
        start = time.perf_counter()
        verdict = self.stage.apply(doc)
        seconds = time.perf_counter() - start + self._prepared_s.pop(doc.id, 0.0)
        inner = self.stage.__dict__.get("counters")
        counters = dict(inner) if inner else None
        if inner:  # run_stage collects counters from the stage it was given: this wrapper
            self.counters = Counter(inner)
            inner.clear()
        if self.recorded is not None:
            changed = {k: v for k, v in doc.metadata.items() if k not in metadata_before or metadata_before[k] is not v}
            removed = [k for k in metadata_before if k not in doc.metadata]
            self.recorded[doc.id] = (verdict, None if doc.text is text_before else doc.text, changed, removed, counters, seconds)
        return verdict


def replaying(stages: list[Stage], known: dict[str, dict[str, Effect]] | None = None, record: bool = False, skip: tuple[str, ...] = ()) -> list[Stage]:
    """``stages`` with every replayable one wrapped: all but the shard-level ones and those named in ``skip``."""
    known = known or {}
    return [s if s.name in skip or isinstance(s, ShardStage) else Replaying(s, known.get(s.name), record) for s in stages]


def replayed(stages: list[Stage]) -> int:
    """How many stage results were replayed, not computed."""
    return sum(s.replayed for s in stages if isinstance(s, Replaying))


def replayed_time_s(stages: list[Stage]) -> dict[str, float]:
    """By stage name, what its replayed results cost in the pass that computed them."""
    return {s.name: s.replayed_time_s for s in stages if isinstance(s, Replaying) and s.replayed_time_s}


def save_effects(path, stages: list[Stage]) -> None:
    """What the recording stages did, for the pass that replays them. Pickled: the effects hold
    metadata values of any type (numpy floats, lists) that must come back as they were for the
    run's outputs to stay byte-identical, and the file is written and read by the run's own code,
    inside its own run directory."""
    effects = {s.name: s.recorded for s in stages if isinstance(s, Replaying) and s.recorded}
    atomic_write_bytes(path, pickle.dumps(effects, protocol=pickle.HIGHEST_PROTOCOL))


def load_effects(path) -> dict[str, dict[str, Effect]]:
    """The effects ``save_effects`` left at ``path``, by stage name; none if there is no file."""
    if not path.exists():
        return {}
    try:
        return pickle.loads(path.read_bytes())
    except Exception as exc:  # a damaged file only costs the work it held
        logger.warning("%s: unreadable (%s); computing again", path, exc)
        return {}
