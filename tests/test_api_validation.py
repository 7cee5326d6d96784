"""A curation request is validated once, after its paths are confined, and its mix is checked
against the domain classifier's labels without opening the model's card a second time."""

import curation.filters.classifier as classifier
import pipelines.config as config
from curation.filters.params import CLASSIFIERS
from tests.test_security import client, curation, post, roots  # noqa: F401 (fixtures)


def test_a_curation_request_is_validated_once_and_reads_each_model_card_once(client, roots, monkeypatch):  # noqa: F811
    validations, cards = [], []
    check_sections, check_model_file = config.check_sections, classifier.check_model_file
    monkeypatch.setattr(config, "check_sections", lambda cfg, files: (validations.append(files), check_sections(cfg, files))[1])
    monkeypatch.setattr(classifier, "check_model_file", lambda path: (cards.append(str(path)), check_model_file(path))[1])
    body = curation([str(roots["data"] / "glob" / "ok.jsonl")], mix={"targets": {"finance": 0.5, "general": 0.5}})
    body["config"]["sources"][0]["domain"] = None  # untagged: the mix must match the classifier's labels
    response = post(client, "/v1/jobs/curation", body)
    assert response.status_code == 201, response.text
    assert validations == [True]  # once, with files opened
    assert sorted(cards) == [str(CLASSIFIERS / "domain.ftz"), str(CLASSIFIERS / "quality.ftz")]  # for the model paths, none for the mix


def test_a_mix_the_classifier_cannot_label_is_refused_by_name(client, roots):  # noqa: F811
    body = curation([str(roots["data"] / "glob" / "ok.jsonl")], mix={"targets": {"finance": 0.5, "legal": 0.5}})
    body["config"]["sources"][0]["domain"] = None
    response = post(client, "/v1/jobs/curation", body)
    assert response.status_code == 422 and "no source for ['legal']" in response.text, response.text
