"""The bundled run's outputs are byte for byte those recorded before the refactoring of issue 16.

A change that is meant to alter the outputs records a new fingerprint, and says why in its commit:
    python -m pipelines.web_corpus && python -m tests.run_fingerprint runs/sample --write tests/data/bundled_run_fingerprint.json
"""

import json

import pytest

from tests.conftest import ROOT
from tests.run_fingerprint import differences, run_fingerprint

RECORDED = ROOT / "tests" / "data" / "bundled_run_fingerprint.json"


@pytest.mark.slow
def test_the_bundled_run_produces_the_recorded_outputs(bundled_run):
    run_dir, result = bundled_run
    assert result.returncode == 0, result.stderr[-3000:]
    assert differences(json.loads(RECORDED.read_text()), run_fingerprint(run_dir)) == []
