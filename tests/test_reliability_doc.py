"""Every test RELIABILITY.md names exists (its rows are checked by those tests passing in CI)."""

import re

from tests.conftest import ROOT


def test_every_test_named_in_reliability_md_exists():
    text = (ROOT / "RELIABILITY.md").read_text()
    named = []
    for cell in re.findall(r"`(tests/[\w/]+\.py)(::\w+)?`((?:, `::\w+`)*)", text):
        path, first, more = cell
        names = ([first] if first else []) + re.findall(r"::\w+", more)
        named += [(path, n[2:]) for n in names]
    assert len(named) > 25
    missing = [f"{p}::{n}" for p, n in named if not re.search(rf"^def {n}\(", (ROOT / p).read_text(), re.M)]
    assert missing == []
