"""Checkpoints of a training run: model and optimizer through torch.distributed.checkpoint
(resharded on load, so the number of processes may change); scheduler, data position and RNG in a
small JSON/pt beside them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from tokenizer.files import atomic_write_bytes


class Checkpointer:
    """``root/step-<n>/``, complete once its ``extra.json`` exists; the newest ``keep`` are kept."""

    def __init__(self, root: Path, keep: int):
        self.root, self.keep = root, keep

    def latest(self) -> Path | None:
        done = sorted(self.root.glob("step-*/extra.json"))
        return done[-1].parent if done else None

    def save(self, step: int, model, optimizer, scheduler, data_state: dict, rank: int) -> None:
        """``data_state``: the sampler's state after the last batch this step trained on."""
        path = self.root / f"step-{step:08d}"
        model_sd, optim_sd = get_state_dict(model, optimizer)
        dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=str(path))
        torch.save({"cpu": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}, path / f"rng-{rank}.pt")
        dist.barrier()
        if rank == 0:  # written last: a checkpoint without it is incomplete and ignored
            extra = {"step": step, "scheduler": scheduler.state_dict(), "data": data_state}
            atomic_write_bytes(path / "extra.json", json.dumps(extra).encode())
            for old in sorted(self.root.glob("step-*"))[: -self.keep]:
                shutil.rmtree(old, ignore_errors=True)
        dist.barrier()

    def load(self, path: Path, model, optimizer, scheduler, sampler, rank: int) -> int:
        model_sd, optim_sd = get_state_dict(model, optimizer)
        state = {"model": model_sd, "optim": optim_sd}
        dcp.load(state, checkpoint_id=str(path))
        set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
        extra = json.loads((path / "extra.json").read_text())
        scheduler.load_state_dict(extra["scheduler"])
        sampler.load_state_dict(extra["data"])
        rng = path / f"rng-{rank}.pt"
        if rng.exists():  # absent when resuming on more processes than saved: keep the fresh seed
            states = torch.load(rng, weights_only=False)
            torch.set_rng_state(states["cpu"])
        return extra["step"]
