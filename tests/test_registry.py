"""The registry of phases and stages (``pipelines.stages``) is the one list the rest reads."""

import json

from pipelines.config import WebCorpusConfig
from pipelines.stages import CURATE, PHASES, build_stages, phase_of, stage_names


def test_the_built_stages_are_the_named_per_document_stages_in_order():
    for overrides in ({}, {"url_filter": {"enabled": False}, "pii": {"enabled": False}, "dedup": {"enabled": False}}):
        cfg = WebCorpusConfig.model_validate(overrides)
        per_document = [n for n in stage_names(cfg) if phase_of(n) is CURATE]
        assert [s.name for s in build_stages(cfg)] == per_document
    cfg = WebCorpusConfig.model_validate({"dedup": {"enabled": False}})
    assert stage_names(cfg)[-1] == "mix" and "dedup" not in stage_names(cfg)


def test_every_progress_step_of_a_run_belongs_to_a_phase(mixed_run):
    cfg, _, _ = mixed_run
    steps = [s["name"] for s in json.loads((cfg.run_dir / "progress.json").read_text())["steps"]]
    assert steps and all(any(p.owns_step(s) for p in PHASES) for s in steps), steps
    for phase in PHASES:  # the steps a phase always runs are the ones the service waits for
        assert set(phase.steps) <= set(steps), (phase.name, steps)
