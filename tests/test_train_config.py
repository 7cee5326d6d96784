"""The training job's config (``trainer.config``): torch-free, typed, every error naming its field."""

import subprocess
import sys

import pytest

from tests.conftest import ROOT
from service.confinement import path_fields
from trainer.config import PRESETS, ConfigError, TrainConfig, load_train_config


def test_importing_the_config_does_not_import_torch():
    code = "import sys, trainer.config; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT, env={"PYTHONPATH": str(ROOT)})
    assert result.returncode == 0 and result.stdout.strip() == "False", result.stderr[-2000:]


def test_presets_overrides_and_yaml_apply_in_order(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("optim:\n  lr: 1.0e-3\n  steps: 7\nmodel:\n  n_layers: 3\n")
    cfg = load_train_config("tiny", path, ["optim.steps=9", "optim.lr=3e-4", "data.ratios={finance: 1, general: 3}"])
    assert cfg.model.d_model == 128 and cfg.model.n_layers == 3  # preset, then the file
    assert cfg.optim.steps == 9 and cfg.optim.lr == pytest.approx(3e-4)  # "3e-4" is a string to YAML
    assert cfg.data.ratios == {"finance": 1.0, "general": 3.0}
    for name in PRESETS:
        assert isinstance(load_train_config(name), TrainConfig)


def test_a_whole_section_override_is_validated_like_dotted_ones():
    cfg = load_train_config("tiny", None, ["data.ratios={a: 1}", "data={manifest: runs/x/tokens, ratios: null}"])
    assert cfg.data.manifest == "runs/x/tokens" and cfg.data.ratios is None
    assert cfg.data.val_fraction == 0.05  # fields the section override leaves out keep their value
    with pytest.raises(ValueError, match=r"data\.val_fraction"):
        load_train_config("tiny", None, ["data={val_fraction: 2}"])
    with pytest.raises(ValueError, match=r"data\.unknown"):
        load_train_config("tiny", None, ["data={unknown: 1}"])


@pytest.mark.parametrize(
    "override, field",
    [
        ("optim.lr=.nan", "optim.lr"),
        ("optim.lr=-.inf", "optim.lr"),
        ("optim.lr=Infinity", "optim.lr"),
        ("optim.lr=0", "optim.lr"),
        ("optim.lr=-1e-3", "optim.lr"),
        ("optim.steps=0", "optim.steps"),
        ("optim.steps=2.5", "optim.steps"),
        ("optim.micro_batch=32", "optim.micro_batch"),
        ("optim.global_batch=0", "optim.global_batch"),
        ("optim.schedule=linear", "optim.schedule"),
        ("model.seq_len=0", "model.seq_len"),
        ("model.d_model=100", None),  # divisible by 4 heads: fine
        ("model.n_heads=3", "model.n_heads"),
        ("model.logit_softcap=.nan", "model.logit_softcap"),
        ("data.val_fraction=1.5", "data.val_fraction"),
        ("data.ratios={finance: .inf}", "data.ratios.finance"),
        ("data.ratios={finance: -1}", "data.ratios.finance"),
        ("data.schedule=[[0, {finance: 0}]]", "data.schedule"),
        ("distill.alpha=1.5", "distill.alpha"),
        ("objective.kind=bert", "objective.kind"),
        ("parallel.sharding=zero1", "parallel.sharding"),
        ("log.val_every=0", "log.val_every"),
        ("checkpoint.keep=0", "checkpoint.keep"),
        ("out_dir=[a, b]", "out_dir"),
        ("stop_after=-1", "stop_after"),
        ("optim.lr.x=1", "optim.lr"),
        ("nope.x=1", "nope"),
        ("optim.steps=[unclosed", "optim.steps=[unclosed"),
        ("optim.steps=!!python/object/apply:os.system [ls]", "optim.steps=!!python"),
        ("optim.steps=!!int x", "optim.steps=!!int x"),
        ("optim.steps", "section.field=value"),
    ],
)
def test_a_bad_value_is_a_value_error_naming_the_field(override, field):
    if field is None:
        load_train_config("tiny", None, [override])
        return
    with pytest.raises(ValueError, match=field.replace(".", r"\.").replace("[", r"\[")) as info:
        load_train_config("tiny", None, [override])
    assert isinstance(info.value, ConfigError)


def test_noam_takes_lr_zero_as_the_papers_peak():
    assert load_train_config("tiny", None, ["optim.schedule=noam", "optim.lr=0"]).optim.lr == 0


def test_a_bad_config_file_is_a_value_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_train_config("tiny", tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_train_config("tiny", tmp_path / "list.yaml")
    with pytest.raises(ConfigError, match="preset"):
        load_train_config("huge")


def test_path_fields_carry_their_marker_and_no_other_field_does():
    def marked(schema: dict, defs: dict, where: str = "") -> dict:
        found = {}
        for name, prop in schema["properties"].items():
            ref = prop.get("$ref") or next((a["$ref"] for a in prop.get("allOf", []) if "$ref" in a), None)
            if ref:
                found |= marked(defs[ref.split("/")[-1]], defs, f"{where}{name}.")
            elif "path" in prop:
                found[f"{where}{name}"] = prop["path"]
        return found

    schema = TrainConfig.model_json_schema()
    assert marked(schema, schema["$defs"]) == {"data.manifest": "read", "distill.teacher": "read", "log.eval_text": "read", "out_dir": "write"}
    assert dict(path_fields(TrainConfig)) == marked(schema, schema["$defs"])  # what the service confines by


def test_a_frozen_config_refuses_assignment_and_dumps_as_json():
    cfg = load_train_config("tiny").freeze()
    with pytest.raises(AttributeError, match="frozen"):
        cfg.optim.lr = 1.0
    with pytest.raises(AttributeError, match="frozen"):
        cfg.model = cfg.model
    assert TrainConfig.model_validate(cfg.to_dict()).to_dict() == cfg.to_dict()
    assert not TrainConfig.model_validate(cfg.to_dict()).frozen


def test_resolution_settles_what_training_needs_in_a_new_frozen_config():
    from trainer.resolve import resolve

    manifest = {"tokenizer": {"vocab_size": 2000}}  # a run curated before the special ids were recorded
    cfg = load_train_config("tiny", None, ["model.vocab_size=1", "objective.kind=mlm", "optim.schedule=noam", "optim.lr=0", "optim.warmup_steps=16"])
    resolved = resolve(cfg, manifest)
    assert resolved.frozen and not cfg.frozen
    assert resolved.model.vocab_size == 2000 + 1 + 100 and resolved.model.bidirectional  # mask and sentinels embedded
    assert resolved.optim.lr == pytest.approx(128**-0.5 * 16**-0.5)
    assert (cfg.model.vocab_size, cfg.model.bidirectional, cfg.optim.lr) == (1, False, 0)  # the input is left as it was
    assert resolve(resolved, manifest).to_dict() == resolved.to_dict()
    plain = resolve(load_train_config("tiny"), manifest)
    assert plain.model.vocab_size == 8192 and not plain.model.bidirectional  # a larger vocabulary is kept


def test_the_cli_takes_overrides_before_and_after_options():
    from trainer.__main__ import parse_args

    args = parse_args(["--data", "runs/sample/tokens", "optim.steps=16", "--out", "runs/x", "stop_after=8", "--no-progress"])
    assert (args.data, args.out, args.no_progress) == ("runs/sample/tokens", "runs/x", True)
    assert args.overrides == ["optim.steps=16", "stop_after=8"]


def test_paths_from_the_options_are_taken_as_given_not_as_yaml():
    from trainer.__main__ import config_overrides, parse_args

    args = parse_args(["--data", "[x]", "--out", "runs/a: b", "optim.steps=16"])
    cfg = load_train_config("tiny", None, config_overrides(args))
    assert (cfg.data.manifest, cfg.out_dir, cfg.optim.steps) == ("[x]", "runs/a: b", 16)
