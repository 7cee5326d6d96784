"""A finished run's LSH index (``dedup/index/``): the surviving documents' signatures and band
keys, and ``index.json``, the parameters they were made with. A later run deduplicates against
it only if its own signatures are comparable: the same shingles, permutations and banding."""

from __future__ import annotations

import json
from pathlib import Path

from curation.dedup.steps import LSHParams
from tokenizer.files import atomic_write_json
from tokenizer.store_path import as_path

INDEX_PARAMS = ("ngram", "num_perm", "bands", "rows", "seed")


def write_index_info(path: Path, run_name: str, lsh: LSHParams) -> None:
    atomic_write_json(path, {"run": run_name, **{k: getattr(lsh, k) for k in INDEX_PARAMS}})


def index_files(folder: str | Path, lsh: LSHParams) -> tuple[str, list[Path]]:
    """(the run that built it, its index files); ValueError if it is no index or not comparable."""
    info_path = as_path(folder) / "index.json"
    if not info_path.is_file():
        raise ValueError(f"{folder} is not a finished run's dedup/index folder (no index.json)")
    info = json.loads(info_path.read_text())
    mismatched = [k for k in INDEX_PARAMS if info.get(k) != getattr(lsh, k)]
    if mismatched:
        raise ValueError(
            f"built with other LSH parameters ({', '.join(f'{k}={info.get(k)}' for k in mismatched)}); "
            "signatures are only comparable with equal ngram, num_perm, bands, rows and seed"
        )
    return info["run"], sorted(as_path(folder).glob("*.arrow"))
