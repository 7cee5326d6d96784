"""Where the tokenizer's sample pass leaves what its stages did, for the curate pass to replay.

One file per shard under ``<run>/sample_cache/``, removed once the shard is curated. It is pickled:
the effects hold metadata values of any type (numpy floats, lists) that must come back as they
were for the run's outputs to stay byte-identical, and the file is written and read by this run's
own code, inside its own run directory.
"""

from __future__ import annotations

import logging
import pickle

from curation.core.replay import Effect, Replaying
from curation.core.stage import Stage
from pipelines.run_dir import RunDir, atomic_write_bytes

logger = logging.getLogger(__name__)

NOT_REPLAYED = ("read",)  # decoding is cheap, and its effect is the whole page


def cache_path(run: RunDir, shard: str):
    return run.root / "sample_cache" / f"{shard}.pickle"


def save(run: RunDir, shard: str, stages: list[Stage]) -> None:
    effects = {s.name: s.recorded for s in stages if isinstance(s, Replaying) and s.recorded}
    atomic_write_bytes(cache_path(run, shard), pickle.dumps(effects, protocol=pickle.HIGHEST_PROTOCOL))


def load(run: RunDir, shard: str) -> dict[str, dict[str, Effect]]:
    path = cache_path(run, shard)
    if not path.exists():
        return {}
    try:
        return pickle.loads(path.read_bytes())
    except Exception as exc:  # a damaged cache only costs the work it held
        logger.warning("%s: unreadable (%s); computing again", path, exc)
        return {}


def drop(run: RunDir, shard: str) -> None:
    cache_path(run, shard).unlink(missing_ok=True)
