"""Joining (or making) the process group, and the device this process trains on."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def init_distributed() -> tuple[int, int, torch.device]:
    """Join the torchrun group, or make a group of one (FSDP2 needs a process group either way).

    A group made before (Ray Train's workers get theirs from ``TorchTrainer``) is used as it is,
    with the CUDA device its launcher made current: Ray hands each worker its own GPUs, which
    LOCAL_RANK need not index."""
    if dist.is_initialized():
        cuda = torch.cuda.is_available() and dist.get_backend() == "nccl"
        return dist.get_rank(), dist.get_world_size(), torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")
    alone = "RANK" not in os.environ
    if alone:
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
    cuda = torch.cuda.is_available()
    local = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device("cuda", local) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    backend = "nccl" if cuda else "gloo"
    if alone:
        # a group of one needs no rendezvous: an in-process store, so that many single-process runs
        # on one machine (an ablation's) never race for a free TCP port
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
    else:
        dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size(), device
