"""What the training state occupies on this process, counted from the live tensors.

``model_state_bytes`` adds up the storages of the tensors a process holds for the model: its
parameter shards (FSDP2's local shards, padding included), gradient shards, optimizer state and,
while FSDP2 has them gathered, the unsharded parameters. Activations, the allocator's cache and
communication buffers are not counted: this is the quantity the planner's ZeRO accounting
estimates (``trainer.plan.memory_per_gpu``), measured rather than computed. On a GPU the trainer
also reports ``torch.cuda.max_memory_allocated``, which includes everything.
"""

from __future__ import annotations

import torch
from torch.distributed.tensor import DTensor


def _local(t: torch.Tensor) -> torch.Tensor:
    return t.to_local() if isinstance(t, DTensor) else t


def model_state_bytes(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, int]:
    """Bytes per part: ``params`` (the shards the optimizer steps), ``grads``, ``optimizer``
    (Adam's moments and step counts), ``gathered`` (unsharded parameters alive now). Each storage
    is counted once, by the part that first reaches it."""
    seen: set[int] = set()

    def size(tensors) -> int:
        total = 0
        for t in tensors:
            if t is None:
                continue
            storage = _local(t).untyped_storage()
            if storage.data_ptr() in seen or storage.nbytes() == 0:
                continue
            seen.add(storage.data_ptr())
            total += storage.nbytes()
        return total

    params = [p for group in optimizer.param_groups for p in group["params"]]
    out = {"params": size(params), "grads": size(p.grad for p in params)}
    out["optimizer"] = size(v for state in optimizer.state.values() for v in state.values() if isinstance(v, torch.Tensor))
    # FSDP2 registers the unsharded tensors as the module's parameters while they are gathered
    out["gathered"] = size(p for p in model.parameters() if not isinstance(p, DTensor))
    return out
