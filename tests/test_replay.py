"""The curate pass replays what the tokenizer's sample pass did to its records: the same documents,
texts, metadata, rejections and counters as computing them again, without running the stages."""

from __future__ import annotations

import itertools
from contextlib import ExitStack

import pytest

from curation.readers import InputFile, read_file
from curation.core.replay import Replaying, load_effects, replayed_time_s, replaying, save_effects
from curation.core.stage import TextMeasure, run_stage
from curation.core.stats import StageStats
from pipelines.config import WebCorpusConfig
from pipelines.stages import NOT_REPLAYED, build_stages
from tests.conftest import CORPUS


def _run(stages, docs):
    stats = {s.name: StageStats(s.name) for s in stages}
    rejected = []
    with ExitStack() as stack:
        for stage in stages:
            stack.enter_context(stage)
        for stage in stages:
            docs = run_stage(stage, docs, stats[stage.name], TextMeasure(lambda t: len(t.split())), lambda d, r, raw, s=stage.name: rejected.append((d.id, s, r)))
        kept = [(d.id, d.text, {k: v for k, v in d.metadata.items() if not k.startswith("_")}) for d in docs]
    return kept, rejected, {name: s.to_dict() | {"wall_time_s": 0} for name, s in stats.items()}


def _docs(n=60):
    return itertools.islice(read_file(InputFile(str(CORPUS / "warc" / "finance-00000.warc.gz"), "s", "finance", "warc")), n)


def test_replayed_stages_give_what_computing_them_gives(tmp_path):
    cfg = WebCorpusConfig()
    reference = _run(build_stages(cfg), _docs())
    recording = replaying(build_stages(cfg), record=True, skip=NOT_REPLAYED)
    assert _run(recording, _docs()) == reference  # recording changes nothing either
    save_effects(tmp_path / "effects.pickle", recording)  # as the sample pass leaves them for the curate pass
    known = load_effects(tmp_path / "effects.pickle")
    replayed = replaying(build_stages(cfg), known=known, skip=NOT_REPLAYED)
    prepared = []
    for stage in replayed:
        if isinstance(stage, Replaying):
            stage.stage.apply = None  # the wrapped stage must not run at all: every record is known
            stage.stage.prepare = prepared.append  # nor work ahead on a batch (extraction's child)
    assert _run(replayed, _docs()) == reference
    assert prepared == []
    assert sum(s.replayed for s in replayed if isinstance(s, Replaying)) > 60


def test_the_replaying_pass_credits_each_stage_with_what_its_results_cost(tmp_path):
    """A stage's time in the funnel includes what it spent in the sample pass on the results the
    curate pass replays: otherwise half of extraction's cost would vanish from the stage shares."""
    cfg = WebCorpusConfig()
    recording = replaying(build_stages(cfg), record=True, skip=NOT_REPLAYED)
    _run(recording, _docs())
    save_effects(tmp_path / "effects.pickle", recording)
    again = replaying(build_stages(cfg), known=load_effects(tmp_path / "effects.pickle"), skip=NOT_REPLAYED)
    _run(again, _docs())
    credit = replayed_time_s(again)
    assert credit["extract"] > 0 and set(credit) <= {s.name for s in again}
    # each stage is credited exactly the time its recorded results took
    recorded = {s.name: sum(e[5] for e in s.recorded.values()) for s in recording if isinstance(s, Replaying) and s.recorded}
    assert credit == pytest.approx({k: v for k, v in recorded.items() if v})
