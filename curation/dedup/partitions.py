"""Hash partitions of dedup's arrays, as Arrow IPC files under one scratch folder.

No process holds all signatures, band keys or edges: every step reads one partition,
``<folder>/p<k>/*.arrow`` (one file per task that wrote into it), and scatters its output by hash
into the partitions of the next step. Files are renamed into place when complete.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather

from tokenizer.files import atomic_path
from tokenizer.store_path import readable


def write_arrow(path: Path, columns: dict[str, np.ndarray | list | pa.Array]) -> None:
    """An Arrow IPC file of ``columns`` (numpy object arrays are written as strings)."""
    arrays = {
        name: col
        if isinstance(col, pa.Array)
        else pa.array(list(col), type=pa.string())
        if isinstance(col, np.ndarray) and col.dtype == object
        else pa.array(col)
        for name, col in columns.items()
    }
    write_table(path, pa.table(arrays))


def write_table(path: Path, table: pa.Table) -> None:
    with atomic_path(path) as tmp:
        feather.write_feather(table, tmp, compression="uncompressed")


def partition_dir(folder: Path, k: int) -> Path:
    return folder / f"p{k:04d}"


def read_partition(folder: Path) -> pa.Table | None:
    """Every file of one partition folder, concatenated in name order; None if there is none."""
    files = sorted(folder.glob("*.arrow")) if folder.exists() else []
    tables = [feather.read_table(readable(f)) for f in files]
    return pa.concat_tables(tables) if tables else None


def scatter(folder: Path, source: str, part_of: np.ndarray, n_parts: int, columns: dict) -> None:
    """Write ``columns`` row-wise into ``folder/p<k>/<source>.arrow`` for partition k = part_of."""
    for k in range(n_parts):
        rows = part_of == k
        picked = {name: col.filter(pa.array(rows)) if isinstance(col, pa.Array) else col[rows] for name, col in columns.items()}
        write_arrow(partition_dir(folder, k) / f"{source}.arrow", picked)


def partition_of(values: np.ndarray, n_parts: int) -> np.ndarray:
    return ((values.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(40)) % np.uint64(n_parts)


def signature_column(sigs: np.ndarray) -> pa.Array:
    return pa.array([row.tobytes() for row in sigs], type=pa.binary(4 * sigs.shape[1]))


def signature_matrix(column: pa.ChunkedArray | pa.Array, num_perm: int) -> np.ndarray:
    if len(column) == 0:
        return np.empty((0, num_perm), dtype=np.uint32)
    return np.frombuffer(b"".join(column.to_pylist()), dtype=np.uint32).reshape(-1, num_perm)


def band_key_columns(keys: np.ndarray) -> dict[str, np.ndarray]:
    return {f"band{j:03d}": np.ascontiguousarray(keys[:, j]) for j in range(keys.shape[1])}
