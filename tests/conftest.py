import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "data" / "sample_corpus"
REAL_CRAWL = CORPUS / "real_crawl" / "iana.warc.gz"

# Tests must never reach a model hub; everything they need ships in the repo or a package.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def corpus_manifest() -> dict:
    return json.loads((CORPUS / "MANIFEST.json").read_text())


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray for the in-process pipeline tests (starting one costs seconds)."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()
