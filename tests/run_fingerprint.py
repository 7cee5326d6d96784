"""A fingerprint of a run's outputs, to check that a refactoring changes no byte a run produces.

    python -m tests.run_fingerprint runs/sample                       # print it
    python -m tests.run_fingerprint runs/sample --write tests/data/bundled_run_fingerprint.json

Covered: ``stats.json`` without what measures time or names the run, every file of ``rejected/``,
``filtered/``, ``deduped/``, ``dedup/index/`` (its ``index.json`` without the run's name), the
tokenizer, and the token shards with ``manifest.json``. Left out: ``progress.json`` and
``stats/<phase>/*.json`` (timestamps and wall times, and the per-shard funnels are in
``stats.json`` anyway), and ``config.yaml`` (it names the run and holds absolute source paths;
its fingerprint is in ``stats.json``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

HASHED_FOLDERS = ("rejected", "filtered", "deduped", "dedup/index", "tokenizer", "tokens")
# Keys that measure time (they differ between two runs of the same code), name the run, say how
# the machine cut the work (dedup's partitions default to one per CPU; the result does not depend
# on them), or hash the resolved config (``config_fingerprint``: the default source and model paths
# are absolute, so it changes with where the repository is checked out), or count the object
# store's retried requests (``store``: how flaky the store was, only in runs that use one).
VOLATILE_KEYS = {"wall_time_s", "shard_time_s", "token_count_time_s", "run", "partitions", "config_fingerprint", "store"}


def _without(value, keys: set[str]):
    if isinstance(value, dict):
        return {k: _without(v, keys) for k, v in value.items() if k not in keys}
    if isinstance(value, list):
        return [_without(v, keys) for v in value]
    return value


def _json_digest(payload) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def run_fingerprint(run_dir: str | Path) -> dict[str, str]:
    """sha256 per output file (relative path -> digest), JSON files with their volatile keys removed."""
    root = Path(run_dir)
    digests = {"stats.json": _json_digest(_without(json.loads((root / "stats.json").read_text()), VOLATILE_KEYS))}
    for folder in HASHED_FOLDERS:
        for path in sorted((root / folder).rglob("*")):
            if not path.is_file():
                continue
            rel = path.relative_to(root).as_posix()
            if path.suffix == ".json":
                digests[rel] = _json_digest(_without(json.loads(path.read_text()), VOLATILE_KEYS))
            else:
                digests[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return dict(sorted(digests.items()))


def differences(expected: dict[str, str], actual: dict[str, str]) -> list[str]:
    """One line per file missing, extra or changed; empty when the outputs are the same."""
    lines = [f"missing: {p}" for p in sorted(set(expected) - set(actual))]
    lines += [f"extra: {p}" for p in sorted(set(actual) - set(expected))]
    lines += [f"changed: {p}" for p in sorted(set(expected) & set(actual)) if expected[p] != actual[p]]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.run_fingerprint", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--write", type=Path, help="record the fingerprint in this JSON file")
    parser.add_argument("--compare", type=Path, help="compare with a recorded fingerprint; exit 1 on a difference")
    args = parser.parse_args(argv)
    fingerprint = run_fingerprint(args.run_dir)
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(json.dumps(fingerprint, indent=1, sort_keys=True) + "\n")
    if args.compare:
        diff = differences(json.loads(args.compare.read_text()), fingerprint)
        print("\n".join(diff) or f"identical: {len(fingerprint)} files")
        return 1 if diff else 0
    if not args.write:
        print(json.dumps(fingerprint, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
