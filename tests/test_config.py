import pytest

from configs.overrides import parse_overrides
from pipelines.config import ConfigError, WebCorpusConfig
from pipelines.config_loading import load_config


def test_defaults_follow_fineweb_and_read_the_bundled_corpus():
    cfg = load_config()
    assert cfg.language.languages == ["en"] and cfg.language.threshold == 0.65
    assert cfg.quality.c4_quality.filter_no_terminal_punct is False
    assert cfg.quality.gopher_quality.min_doc_words == 50
    assert {s.domain for s in cfg.sources} == {"finance", "general", None}  # None: untagged, classified
    assert cfg.domains() == {"finance", "general"}


@pytest.mark.parametrize(
    "override, field",
    [
        ("quality.classifier.model_path=/no/such/model.ftz", "quality.classifier.model_path"),
        ("domain_classifier.model_path=README.md", "domain_classifier.model_path"),
        ("quality.classifier.threshold=1.5", "quality.classifier.threshold"),
        ("quality.classifier.keep_top_fraction=0", "quality.classifier.keep_top_fraction"),
        ("domain_classifier.enabled=false", "sources.2.domain"),
    ],
)
def test_bad_classifier_settings_name_the_field(override, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_config(overrides=[override])


def test_overrides_are_typed_yaml_values():
    cfg = load_config(overrides=["language.languages=[en, de]", "quality.gopher_quality.min_doc_words=80", "language.enabled=false"])
    assert cfg.language.languages == ["en", "de"]
    assert cfg.quality.gopher_quality.min_doc_words == 80
    assert cfg.language.enabled is False
    assert parse_overrides(["a.b.c=null"]) == {"a": {"b": {"c": None}}}


def test_unknown_field_is_refused_by_name(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("quality:\n  gopher_quality:\n    min_doc_wrods: 10\n")
    with pytest.raises(ConfigError, match=r"quality\.gopher_quality\.min_doc_wrods"):
        load_config(path)


def test_wrong_type_is_refused_by_name():
    with pytest.raises(ConfigError, match=r"language\.threshold"):
        load_config(overrides=["language.threshold=high"])
    with pytest.raises(ConfigError, match=r"language\.threshold"):
        load_config(overrides=["language.threshold=1.5"])


@pytest.mark.parametrize("bad", ["no_equals_sign", "=value"])
def test_malformed_override_is_refused(bad):
    with pytest.raises(ConfigError, match="section.field=value"):
        load_config(overrides=[bad])


def test_non_mapping_yaml_is_refused(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(path)


def test_duplicate_source_names_are_refused():
    src = {"name": "a", "format": "jsonl", "paths": ["x.jsonl"], "domain": "general"}
    with pytest.raises(ConfigError, match="sources"):
        load_config(overrides=[f"sources=[{src}, {src}]"])


def test_fingerprint_ignores_where_the_run_lives_but_not_what_it_does():
    base = WebCorpusConfig()
    assert base.fingerprint() == WebCorpusConfig(run_name="other", runs_dir="/elsewhere").fingerprint()
    assert base.fingerprint() != load_config(overrides=["language.threshold=0.9"]).fingerprint()


def test_the_documented_config_file_is_the_defaults():
    from pathlib import Path

    from tests.conftest import ROOT

    documented = load_config(ROOT / "configs" / "web_corpus.yaml")
    defaults = WebCorpusConfig()
    models = {"quality": {"classifier": {"model_path"}}, "domain_classifier": {"model_path"}, "decontaminate": {"eval_paths"}}  # relative in the file
    assert documented.model_dump(exclude={"sources": True, **models}) == defaults.model_dump(exclude={"sources": True, **models})
    for cfg in (documented, defaults):
        assert Path(cfg.quality.classifier.model_path).name == "quality.ftz"
        assert Path(cfg.domain_classifier.model_path).name == "domain.ftz"
    assert [Path(p).name for p in documented.decontaminate.eval_paths] == [Path(p).name for p in defaults.decontaminate.eval_paths]
    assert [s.domain for s in documented.sources] == [s.domain for s in defaults.sources]
    assert [Path(p).name for s in documented.sources for p in s.paths] == [Path(p).name for s in defaults.sources for p in s.paths]


def test_a_path_the_program_sets_is_taken_as_given_not_as_yaml(tmp_path):
    from ablation.config import AblationConfig

    ablation = AblationConfig(out_dir=str(tmp_path / "[x]"), variants=["full"])
    cfg = ablation.curation(ablation.resolved_variants()[0], tmp_path / "a: b" / "spm.model")
    assert cfg.runs_dir == str(tmp_path / "[x]" / "ablation" / "curation")
    assert cfg.tokenizer.model_path == str(tmp_path / "a: b" / "spm.model")
    assert parse_overrides([("a.b", "[x]"), "a.c=[x]"]) == {"a": {"b": "[x]", "c": ["x"]}}
