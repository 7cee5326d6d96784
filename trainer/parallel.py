"""Everything applied to the plain model from the outside, and only here: activation
checkpointing, mixed precision, compile, and FSDP2 per block and at the root."""

from __future__ import annotations

import functools

import torch
from torch import nn
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, OffloadPolicy, fully_shard

from trainer.config import ParallelConfig
from trainer.model import Transformer


def device_mesh(cfg: ParallelConfig, world: int, device_type: str):
    """1-D for full/grad_op sharding; 2-D (replicate, shard) for replicate and hybrid."""
    if cfg.sharding in ("full", "grad_op"):
        return init_device_mesh(device_type, (world,), mesh_dim_names=("shard",))
    shard = 1 if cfg.sharding == "replicate" else (cfg.hybrid_shard_size or world)
    if world % shard:
        raise ValueError(f"parallel.hybrid_shard_size ({shard}) must divide the number of processes ({world})")
    return init_device_mesh(device_type, (world // shard, shard), mesh_dim_names=("replicate", "shard"))


def is_sharded(cfg: ParallelConfig, world: int) -> bool:
    """Whether FSDP2 wraps the model: always past one process, and for CPU offload (which needs it)."""
    return world > 1 or cfg.cpu_offload


def bf16_autocast(module: nn.Module, device_type: str) -> None:
    """Runs the module's forward under bf16 autocast. Set on the instance (the model file knows
    nothing of precision); the parameters and the state dict stay as they were."""
    forward = module.forward

    @functools.wraps(forward)
    def autocast_forward(*args, **kwargs):
        with torch.autocast(device_type, dtype=torch.bfloat16):
            return forward(*args, **kwargs)

    module.forward = autocast_forward


def checkpoint_blocks(model: Transformer) -> None:
    """Activation checkpointing per block: its activations are recomputed in the backward pass."""
    for i, layer in enumerate(model.layers):
        model.layers[i] = checkpoint_wrapper(layer)


def parallelize(model: Transformer, cfg: ParallelConfig, world: int, device_type: str) -> Transformer:
    """Activation checkpointing, then mixed precision and compile, then FSDP2 per block and at the root.

    With one process there is nothing to shard: FSDP2 would only add casts and copies (measured on
    an H100: 28% MFU with it, 42% without), so the model stays unsharded, bf16 comes from autocast
    around its forward and the whole model, output loss included, is compiled as one graph, as
    torchtitan does at degree 1. Sharded, bf16 comes from FSDP2's MixedPrecisionPolicy and the
    blocks are compiled one by one (compiling around FSDP2's hooks fails in dynamo).
    """
    if cfg.cpu_offload and device_type != "cuda":
        raise ValueError("parallel.cpu_offload moves FSDP2's sharded state from the GPU to host memory; "
                         f"training runs on {device_type!r}, where the state already is in host memory")
    if cfg.activation_checkpointing:
        checkpoint_blocks(model)
    if not is_sharded(cfg, world):
        if cfg.mixed_precision == "bf16":
            bf16_autocast(model, device_type)
        if cfg.compile:
            model.compile()  # in place: the state dict keeps its keys, so checkpoints stay compatible
        return model
    if cfg.compile:
        for i, layer in enumerate(model.layers):
            model.layers[i] = torch.compile(layer)
        model.output = torch.compile(model.output)
    mp = MixedPrecisionPolicy(
        param_dtype=torch.bfloat16 if cfg.mixed_precision == "bf16" else torch.float32, reduce_dtype=torch.float32
    )
    mesh = device_mesh(cfg, world, device_type)
    # grad_op keeps the gathered parameters from forward to backward (ZeRO-2-like: only
    # gradients and optimizer state stay sharded between the passes)
    reshard = cfg.sharding != "grad_op"
    # offload: parameters, gradients and optimizer state stay sharded in pinned host memory; each
    # block's parameters are copied to the GPU for its all-gather, its gradients copied back, and
    # the optimizer steps on the CPU
    offload = CPUOffloadPolicy(pin_memory=True) if cfg.cpu_offload else OffloadPolicy()
    for layer in model.layers:
        fully_shard(layer, mesh=mesh, mp_policy=mp, reshard_after_forward=reshard, offload_policy=offload)
    fully_shard(model, mesh=mesh, mp_policy=mp, reshard_after_forward=reshard, offload_policy=offload)
    return model


def prepare_teacher(teacher: Transformer, cfg: ParallelConfig, world: int, device_type: str) -> Transformer:
    """A distillation teacher at the student's precision: whole in every process (never sharded),
    under bf16 autocast when the student trains in bf16, compiled when the student is compiled whole."""
    if cfg.mixed_precision == "bf16":
        bf16_autocast(teacher, device_type)
    if cfg.compile and not is_sharded(cfg, world):
        teacher.compile()
    return teacher
