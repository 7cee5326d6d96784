"""Checkpoints on an object store (or any fsspec filesystem), committed without a rename.

The same layout and contract as the local ``Checkpointer`` (``checkpoints/step-N/`` with the
torch.distributed.checkpoint files, ``rng-<rank>.pt`` and ``extra.json``), through DCP's
``FsspecWriter``/``FsspecReader``. A store has no atomic rename of a folder, so a checkpoint counts
as done only when its marker, ``extra.json``, exists: it is one PUT (atomic on S3), made by rank 0
after every rank's files are written (a barrier), and deleted first when an old checkpoint is
dropped, so a listing never shows a marker beside a half-written or half-deleted checkpoint.

With each checkpoint rank 0 also copies the run's metrics.jsonl and config.json from its local
mirror (``trainer.storage.local_out_dir``) to the store, and every rank's count of retried store
errors into ``store_stats.json``.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint._fsspec_filesystem import FsspecReader, FsspecWriter  # not re-exported by the package
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from trainer import storage

logger = logging.getLogger(__name__)

MARKER = "extra.json"


class StoreCheckpointer:
    def __init__(self, out_url: str, keep: int, mirror: Path):
        self.out, self.keep, self.mirror = str(out_url).rstrip("/"), keep, mirror
        self.root = storage.join(self.out, "checkpoints")
        self.fs, self.root_path = storage.filesystem(self.root)

    def _complete(self) -> list[str]:
        """Paths (within the filesystem) of the checkpoints whose marker exists, oldest first."""
        self.fs.invalidate_cache()
        markers = self.fs.glob(f"{self.root_path}/step-*/{MARKER}")
        return sorted(m.rsplit("/", 1)[0] for m in markers)

    def latest(self) -> str | None:
        done = self._complete()
        return self._url(done[-1]) if done else None

    def _url(self, path: str) -> str:
        """The URL of a path within the store's filesystem."""
        return storage.join(self.root, path.rsplit("/", 1)[1])

    def save(self, step: int, model, optimizer, scheduler, data_state: dict, rank: int) -> None:
        """``data_state``: the sampler's state after the last batch this step trained on."""
        url = storage.join(self.root, f"step-{step:08d}")
        model_sd, optim_sd = get_state_dict(model, optimizer)
        opts = storage.store_options(url)
        try:
            dcp.save({"model": model_sd, "optim": optim_sd}, storage_writer=FsspecWriter(url, **opts))
            rng = io.BytesIO()
            torch.save({"cpu": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}, rng)
            storage.write_bytes(storage.join(url, f"rng-{rank}.pt"), rng.getvalue())
        except OSError as exc:
            raise OSError(f"checkpoint {url}: {exc}") from exc
        stats = [None] * dist.get_world_size()
        dist.all_gather_object(stats, storage.STATS.snapshot())
        if rank == 0:
            self._publish_run_files(stats)
            extra = {"step": step, "scheduler": scheduler.state_dict(), "data": data_state}
            storage.write_bytes(storage.join(url, MARKER), json.dumps(extra).encode())  # written last: the commit
            for old in self._complete()[: -self.keep]:
                self._drop(old)
        dist.barrier()

    def _publish_run_files(self, stats: list[dict]) -> None:
        for name in ("metrics.jsonl", "config.json"):
            local = self.mirror / name
            if local.exists():
                storage.write_bytes(storage.join(self.out, name), local.read_bytes())
        total = {"retried": sum(s["retried"] for s in stats), "per_rank": stats}
        storage.write_bytes(storage.join(self.out, "store_stats.json"), json.dumps(total, indent=1).encode())
        if total["retried"]:
            logger.info("store requests retried after transient errors so far: %d", total["retried"])

    def _drop(self, path: str) -> None:
        self.fs.rm_file(f"{path}/{MARKER}")  # first: from here on the checkpoint no longer counts
        self.fs.rm(path, recursive=True)

    def load(self, url: str, model, optimizer, scheduler, sampler, rank: int) -> int:
        model_sd, optim_sd = get_state_dict(model, optimizer)
        state = {"model": model_sd, "optim": optim_sd}
        dcp.load(state, storage_reader=FsspecReader(url, **storage.store_options(url)))
        set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
        extra = json.loads(storage.read_bytes(storage.join(url, MARKER)))
        scheduler.load_state_dict(extra["scheduler"])
        sampler.load_state_dict(extra["data"])
        fs, rng_path = storage.filesystem(storage.join(url, f"rng-{rank}.pt"))
        if fs.exists(rng_path):  # absent when resuming on more processes than saved: keep the fresh seed
            states = torch.load(io.BytesIO(fs.cat_file(rng_path)), weights_only=False)
            torch.set_rng_state(states["cpu"])
        return extra["step"]
