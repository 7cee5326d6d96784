"""Joining (or making) the process group, and the device this process trains on."""

from __future__ import annotations

import os
import socket

import torch
import torch.distributed as dist


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_distributed() -> tuple[int, int, torch.device]:
    """Join the torchrun group, or make a group of one (FSDP2 needs a process group either way).

    A group made before (Ray Train's workers get theirs from ``TorchTrainer``) is used as it is,
    with the CUDA device its launcher made current: Ray hands each worker its own GPUs, which
    LOCAL_RANK need not index."""
    if dist.is_initialized():
        cuda = torch.cuda.is_available() and dist.get_backend() == "nccl"
        return dist.get_rank(), dist.get_world_size(), torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")
    if "RANK" not in os.environ:
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()))
    cuda = torch.cuda.is_available()
    local = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device("cuda", local) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return dist.get_rank(), dist.get_world_size(), device
