"""The ablation loop: its variants, its report, and a 2-variant x 2-seed run end to end."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ablation import training as ablation_training
from ablation.ablate import run_ablation, train_plan
from ablation.config import LADDER, OPTIONAL_STAGES, AblationConfig, load_ablation_config
from ablation.report import plot, render_markdown, variant_summary
from pipelines.config import ConfigError
from scripts.s3_server import moto_in_environment
from tests.conftest import CORPUS, ROOT
from tests.test_eval_bpb import small_eval_text
from tokenizer.store_path import StorePath

TRAIN = [
    "model.d_model=64", "model.n_layers=2", "model.n_heads=4", "model.seq_len=64", "optim.steps=3", "optim.global_batch=8",
    "optim.micro_batch=4", "optim.warmup_steps=1", "log.val_every=3", "parallel.mixed_precision=fp32", "data.prefetch=false",
]  # fmt: skip


def _write(tmp_path, tree) -> str:
    path = tmp_path / "ablation.yaml"
    path.write_text(json.dumps(tree))
    return str(path)


def test_the_training_half_imports_no_curation_code():
    """``python -m ablation.training`` runs where only the trainer's dependencies are installed."""
    code = "import sys, ablation.training; print(sorted({m.split('.')[0] for m in sys.modules} & {'curation', 'pipelines', 'ray', 'datatrove'}))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT, env={"PYTHONPATH": str(ROOT)})
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stderr[-2000:]


def test_the_ladder_climbs_one_kind_of_stage_at_a_time_and_leave_one_out_drops_one(tmp_path):
    cfg = load_ablation_config(_write(tmp_path, {"out_dir": str(tmp_path), "leave_one_out": True}))
    variants = cfg.resolved_variants()
    assert [v.name for v in variants][: len(LADDER)] == list(LADDER)
    stages = {v.name: cfg.curation(v) for v in variants}
    assert not stages["extract-lang"].quality.gopher_quality.enabled and not stages["extract-lang"].dedup.enabled
    assert stages["with-heuristics"].quality.gopher_quality.enabled and not stages["with-heuristics"].quality.classifier.enabled
    assert stages["with-dedup"].dedup.enabled and stages["full"].pii.enabled
    loo = [v for v in variants if v.name.startswith("full-no-")]
    assert len(loo) == len(OPTIONAL_STAGES) and not stages["full-no-dedup"].dedup.enabled and stages["full-no-dedup"].pii.enabled
    assert all(c.decontaminate.enabled and c.run_dir == cfg.root / "curation" / n for n, c in stages.items())
    shipped = load_ablation_config(ROOT / "configs" / "ablation.yaml")
    assert [v.name for v in shipped.resolved_variants()] == list(LADDER) and len(shipped.train.seeds) >= 3


def test_a_variant_that_trains_on_the_evaluation_text_or_is_unknown_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="decontaminate"):
        load_ablation_config(_write(tmp_path, {"variants": [{"name": "leaky", "overrides": ["decontaminate.enabled=false"]}]}))
    with pytest.raises(ConfigError, match="unknown variant"):
        load_ablation_config(_write(tmp_path, {"variants": ["everything"]}))
    with pytest.raises(ConfigError, match=r"(?s)variant bad: .*min_doc_words"):
        load_ablation_config(_write(tmp_path, {"variants": [{"name": "bad", "overrides": ["quality.gopher_quality.min_doc_words=many"]}]}))


def test_the_report_shows_each_seed_and_the_spread(tmp_path):
    stats = {"retention": {"docs": 0.5, "tokens_vs_extracted": 0.25, "tokens_in_shards": 1000}, "stages": []}
    runs = {0: {"bpb": {"finance": 2.0, "general": 3.0}, "tokens_trained": 512}, 1: {"bpb": {"finance": 2.2, "general": 3.0}, "tokens_trained": 512}}
    v = variant_summary("full", "the full pipeline", [], stats, runs)
    assert v["bpb"]["finance"]["mean"] == pytest.approx(2.1) and v["bpb"]["finance"]["std"] == pytest.approx(0.1414, abs=1e-4)
    summary = {"name": "t", "seeds": [0, 1], "tokens_trained": [512], "variants": [v]}
    table = render_markdown(summary)
    assert "| full | the full pipeline | 50.00% | 25.00% | 1,000 | 2.1000 ± 0.1414 | 3.0000 ± 0.0000 |" in table
    assert "| full | finance | 2.0000 | 2.2000 |" in table
    raw_runs = {0: {"bpb": {"finance": 2.6, "general": 3.05}, "tokens_trained": 512}, 1: {"bpb": {"finance": 2.8, "general": 2.95}, "tokens_trained": 512}}
    raw = variant_summary("raw", None, [], stats, raw_runs)
    two = render_markdown({**summary, "variants": [raw, v]})
    # finance: 0.6 worse, pooled sigma 0.1414 -> 4.2 sigma, significant; general: 0 +- 0.05, not
    assert "| raw | **+0.6000** (4.2σ) | +0.0000 (0.0σ) |" in two
    plot(summary, tmp_path / "bpb.png")
    assert (tmp_path / "bpb.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_out_dir_on_a_store_puts_every_path_of_the_ablation_there(tmp_path):
    assert AblationConfig(name="t", out_dir=str(tmp_path)).root == tmp_path / "t" and isinstance(AblationConfig().root, Path)
    cfg = AblationConfig(name="t", out_dir="s3://bucket/ablations", variants=["extract-lang", "full"], train={"seeds": [0]})
    assert cfg.root == StorePath("s3://bucket/ablations/t")
    variants = cfg.resolved_variants()
    assert [cfg.curation(v).run_dir for v in variants] == [cfg.root / "curation" / "extract-lang", cfg.root / "curation" / "full"]
    first = train_plan(cfg, variants)[0]
    assert (first["tokens"], first["out"]) == ("s3://bucket/ablations/t/curation/extract-lang/tokens", "s3://bucket/ablations/t/train/extract-lang/seed-0")


def test_the_plot_and_a_failed_commands_log_are_written_to_the_store():
    summary = {"name": "t", "seeds": [0], "tokens_trained": [512], "variants": [
        variant_summary("full", None, [], {"retention": {"docs": 0.5}, "stages": []}, {0: {"bpb": {"finance": 2.0}, "tokens_trained": 512}})]}
    with moto_in_environment() as fs:
        fs.mkdir("abl")
        plot(summary, StorePath("s3://abl/t/bpb.png"))
        assert fs.cat_file("abl/t/bpb.png")[:8] == b"\x89PNG\r\n\x1a\n"
        log = StorePath("s3://abl/t/train.log")
        log.write_text("an earlier attempt\n")
        with pytest.raises(RuntimeError, match="s3://abl/t/train.log"):
            ablation_training._run(["json.tool", "/no/such/file.json"], log)
        text = fs.cat_file("abl/t/train.log").decode()
        assert text.startswith("an earlier attempt\n") and "/no/such/file.json" in text  # appended, as a local log is


def test_a_failed_ablation_leaves_its_error_where_the_service_reads_it(tmp_path, monkeypatch):
    """``<root>/error.txt`` (a job's output_dir) holds what failed, locally and on a store; the
    failure still ends the command."""
    from ablation import ablate

    def failing(cfg, **_):
        raise RuntimeError("`python -m trainer` failed (exit 1); see train.log")

    monkeypatch.setattr(ablate, "run_ablation", failing)
    local = tmp_path / "ablation.yaml"
    local.write_text(f"name: t\nout_dir: {tmp_path}\n")
    with pytest.raises(RuntimeError):
        ablate.main(["--config", str(local)])
    assert (tmp_path / "t" / "error.txt").read_text() == "RuntimeError: `python -m trainer` failed (exit 1); see train.log\n"
    with moto_in_environment() as fs:
        fs.mkdir("abl-failed")
        stored = tmp_path / "stored.yaml"
        stored.write_text("name: t\nout_dir: s3://abl-failed/ablations\n")
        with pytest.raises(RuntimeError):
            ablate.main(["--config", str(stored)])
        assert fs.cat_file("abl-failed/ablations/t/error.txt").decode().startswith("RuntimeError: `python -m trainer` failed")


@pytest.mark.slow
def test_two_variants_two_seeds_run_end_to_end_and_write_their_table(tmp_path):
    sources = [
        {"name": "fin", "format": "warc", "domain": "finance", "paths": [str(CORPUS / "warc" / "finance-00000.warc.gz")]},
        {"name": "gen", "format": "warc", "domain": "general", "paths": [str(CORPUS / "warc" / "general-00000.warc.gz")]},
    ]
    base = tmp_path / "curation.yaml"
    base.write_text(json.dumps({"sources": sources, "tokenizer": {"vocab_size": 1000}, "ray": {"num_cpus": 2}}))
    cfg = AblationConfig(name="t", out_dir=str(tmp_path / "ablations"), curation_config=str(base), variants=["extract-lang", "full"],
                         train={"overrides": [*TRAIN, f"log.eval_text={json.dumps(small_eval_text(tmp_path / 'eval'))}"], "seeds": [0, 1]})
    # curated here, trained "elsewhere" from the plan (as on a GPU machine), then the table
    assert run_ablation(cfg, progress=False, only="curate")["runs"] == 4
    root = tmp_path / "ablations" / "t"
    assert not (root / "train").exists() and not (root / "results.json").exists()
    assert ablation_training.main(["--plan", str(root / "train_plan.json"), "--parallel", "2"]) == 0
    assert len(list(root.glob("train/*/seed-*/bpb.json"))) == 4
    summary = run_ablation(cfg, progress=False)
    assert json.loads((root / "results.json").read_text()) == json.loads(json.dumps(summary))
    table = (root / "results.md").read_text()
    assert "| extract-lang |" in table and "| full |" in table
    assert (root / "bpb.png").read_bytes()[:4] == b"\x89PNG"
    raw, full = summary["variants"]
    assert summary["tokens_trained"] == [3 * 8 * 64]  # the same budget for every run
    for v in (raw, full):
        assert set(v["bpb"]) == {"finance", "general"} and all(b["n"] == 2 and 0 < b["mean"] < 16 for b in v["bpb"].values())
    assert full["retention"]["docs"] < raw["retention"]["docs"]  # the filters and dedup removed something
    assert "gopher_quality" in full["retention"]["rejected_docs"] and "gopher_quality" not in raw["retention"]["rejected_docs"]
    # one tokenizer for both variants: the second was given the first's
    info = json.loads((root / "curation" / "full" / "tokenizer" / "tokenizer.json").read_text())
    assert info["trained"] is False and info["given_path"].endswith("extract-lang/tokenizer/spm.model")
