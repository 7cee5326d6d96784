"""What a run reports per step: ``metrics.jsonl`` (one JSON object a line, written by rank 0) and
the figures computed for it, throughput and MFU from an explicit FLOPs formula (nanoGPT's)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tokenizer.files import atomic_write_bytes
from trainer.config import LogConfig
from trainer.model import Transformer
from trainer.plan import datasheet_peak


def flops_per_token(model: Transformer) -> float:
    """6N + 12 L H Q T: weights (forward + backward) plus attention scores, per token."""
    c = model.cfg
    return 6 * model.num_params() + 12 * c.n_layers * c.n_heads * c.head_dim * c.seq_len


def peak_flops(cfg: LogConfig, device: torch.device) -> float | None:
    """Per device: ``log.peak_flops``, else a known GPU's dense bf16 datasheet figure, else None (no MFU)."""
    if cfg.peak_flops:
        return cfg.peak_flops
    if device.type == "cuda":
        return datasheet_peak(torch.cuda.get_device_name(device))
    return None


def throughput(tokens: int, took: float, data_time: float, data_parts: dict, model_flops_per_token: float, peak: float | None,
               world: int) -> dict:
    """A step's speed: positions per second (MLM predicts only 15% of them), MFU over every
    device, and the share of the step spent waiting for its data (and copying it to the device)."""
    tokens_per_s = tokens / took
    return {
        "tokens_per_s": tokens_per_s,
        "mfu": model_flops_per_token * tokens_per_s / (peak * world) if peak else None,
        "data_time_share": data_time / took,
        "data_time_s": {"total": data_time, **data_parts},
    }


def truncate_metrics(path: Path, start_step: int) -> None:
    """Keep only the lines of steps a resumed run will not redo.

    A run killed between checkpoints logged steps past its last checkpoint (and maybe half a line);
    the resumed run logs those steps again, so without this they would appear twice.
    """
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:  # a line cut by the kill
            continue
        if isinstance(record, dict) and record.get("step", start_step + 1) <= start_step:
            kept.append(line + "\n")
    atomic_write_bytes(path, "".join(kept).encode())


class MetricsLog:
    """``metrics.jsonl``, appended to by rank 0 every ``every`` steps (other ranks write nothing);
    opened after the lines of the steps a resumed run redoes are dropped."""

    def __init__(self, path: Path, start_step: int, every: int, rank: int):
        self.every = every
        self.file = None
        if rank == 0:
            truncate_metrics(path, start_step)
            self.file = open(path, "a")

    def write(self, record: dict) -> bool:
        """Whether ``record`` (of step ``record["step"]``) was written."""
        if self.file is None or record["step"] % self.every:
            return False
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()  # read live by the service while the run goes on
        return True

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
