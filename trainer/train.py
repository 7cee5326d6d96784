"""The training loop: objectives, distillation, FSDP2, AdamW, schedules, global-token loss normalisation, exact resume."""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
from tqdm import tqdm

from trainer.config import TrainConfig
from trainer.data import MixtureSampler, StepBatches, load_streams
from trainer.distill import distill_loss, load_teacher
from trainer.memory import model_state_bytes
from trainer.model import Transformer, lm_loss
from trainer.distributed import init_distributed
from trainer.objectives import Objective, make_objective
from trainer.optim import adamw
from trainer.parallel import is_sharded, parallelize
from trainer.plan import datasheet_peak
from trainer.resolve import resolve, special_ids
from trainer.schedule import lr_lambda
from trainer.storage import is_remote, local_manifest, local_out_dir  # h18: runs on object storage
from trainer.store_checkpoint import StoreCheckpointer  # h18

logger = logging.getLogger(__name__)


def forward_loss(model, cfg: TrainConfig, world: int, device: torch.device, teacher: Transformer | None = None):
    """(inputs, targets, prefix) -> (loss sum, z sum, target count), compiled when configured.

    Under FSDP2 the blocks are compiled one by one and bf16 comes from its MixedPrecisionPolicy;
    in a single process the model is one compiled graph under bf16 autocast. Either way the output
    head and the loss run inside the model's forward, a chunk of positions at a time, with their
    own kernel (``trainer.chunked_loss``). With a teacher the whole logits are needed: the loss is
    the distillation loss (``trainer.distill``) plus the student's z-loss.
    """
    o, d = cfg.optim, cfg.distill
    sharded = is_sharded(cfg.parallel, world)
    autocast = cfg.parallel.mixed_precision == "bf16" and not sharded

    def step(inputs, targets, prefix=None):
        if teacher is None:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                return model(inputs, prefix, targets, o.z_loss, o.label_smoothing)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = model(inputs, prefix)
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.parallel.mixed_precision == "bf16"):
            teacher_logits = teacher(inputs, prefix)
        loss, _ = distill_loss(logits, teacher_logits, targets, d.alpha, d.temperature)
        _, z, n = lm_loss(logits, targets, 0.0, 0.0)
        return loss + o.z_loss * z, z, n

    # under FSDP2 `parallelize` compiled each block: compiling around them again fails in dynamo
    return torch.compile(step) if cfg.parallel.compile and not sharded else step


def flops_per_token(model: Transformer) -> float:
    """6N + 12 L H Q T: weights (forward + backward) plus attention scores, per token."""
    c = model.cfg
    return 6 * model.num_params() + 12 * c.n_layers * c.n_heads * c.head_dim * c.seq_len


def _peak(cfg: TrainConfig, device: torch.device) -> float | None:
    if cfg.log.peak_flops:
        return cfg.log.peak_flops
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        return datasheet_peak(name)
    return None


class Checkpointer:
    """Model and optimizer through torch.distributed.checkpoint (resharded on load, so the number
    of processes may change); scheduler, data position and RNG in a small JSON/pt beside it."""

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
            tmp = path / "extra.json.tmp"
            tmp.write_text(json.dumps(extra))
            tmp.replace(path / "extra.json")
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


def _truncate_metrics(path: Path, start_step: int) -> None:
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
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(kept))
    tmp.replace(path)


def train(cfg: TrainConfig, progress: bool = True) -> list[dict]:
    """Train (or resume) per ``cfg``; returns the step metrics this process logged."""
    rank, world, device = init_distributed()
    train_streams, val_streams, manifest = load_streams(local_manifest(cfg.data.manifest), cfg.data.val_fraction)  # h18: a store's shards cached on this node
    cfg = resolve(cfg, manifest)  # from here on the config does not change
    out = local_out_dir(cfg.out_dir, rank)  # h18: on a store, a local mirror for metrics.jsonl and config.json
    o = cfg.optim
    per_rank = o.global_batch // world
    if o.global_batch % world or per_rank % o.micro_batch:
        raise ValueError(f"optim.global_batch ({o.global_batch}) must split into {world} processes x micro-batches of {o.micro_batch}")
    accum = per_rank // o.micro_batch
    objective = make_objective(cfg.objective, cfg.model.seq_len, special_ids(manifest), manifest["tokenizer"]["vocab_size"], o.seed)
    schedule = [(int(s), r) for s, r in cfg.data.schedule] if cfg.data.schedule else None
    sampler = MixtureSampler(train_streams, cfg.model.seq_len, cfg.data.ratios, schedule)

    torch.manual_seed(o.seed)
    model = Transformer(cfg.model).to(device)
    fpt = flops_per_token(model)
    model = parallelize(model, cfg.parallel, world, device.type)
    teacher = None
    if cfg.distill.teacher:
        teacher = load_teacher(cfg.distill.teacher, device)
        if teacher.cfg.vocab_size < cfg.model.vocab_size or teacher.cfg.bidirectional != cfg.model.bidirectional:
            raise ValueError(f"distill.teacher {cfg.distill.teacher}: its vocabulary ({teacher.cfg.vocab_size}) and attention "
                             f"(bidirectional {teacher.cfg.bidirectional}) must cover the student's ({cfg.model.vocab_size}, {cfg.model.bidirectional})")
    fused = device.type == "cuda" and not cfg.parallel.cpu_offload  # offloaded state steps on the CPU
    optimizer = adamw(model, o, fused)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(o))
    loss_fn = forward_loss(model, cfg, world, device, teacher)
    ckpt = Checkpointer(out / "checkpoints", cfg.checkpoint.keep) if not is_remote(cfg.out_dir) else StoreCheckpointer(cfg.out_dir, cfg.checkpoint.keep, out)  # h18
    start_step = 0
    if (latest := ckpt.latest()) is not None:
        start_step = ckpt.load(latest, model, optimizer, scheduler, sampler, rank)
        if rank == 0:
            logger.info("resumed from %s at step %d", latest, start_step)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    if rank == 0:
        _truncate_metrics(out / "metrics.jsonl", start_step)
    metrics_file = open(out / "metrics.jsonl", "a") if rank == 0 else None
    peak = _peak(cfg, device)
    logged: list[dict] = []
    bar = tqdm(total=o.steps, initial=start_step, desc="train", disable=not (progress and rank == 0))

    def make_batch(step: int):
        first = sampler.state.sequences
        rows = sampler.batch(step, o.global_batch, rank, world)
        return objective.batch(rows, list(range(first + rank, first + o.global_batch, world))), sampler.state_dict()

    end = cfg.stop_after if cfg.stop_after and start_step < cfg.stop_after < o.steps else o.steps
    # the next steps' batches are built in a worker process while this one trains (data.prefetch)
    batches = StepBatches(make_batch, start_step, end, ahead=cfg.data.prefetch, pin_memory=device.type == "cuda")
    try:
        for step in range(start_step, end):
            t0 = time.perf_counter()
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            cpu_batch, data_state, waited = batches.get(step)
            t_copy = time.perf_counter()
            batch = cpu_batch.to(device)
            if device.type == "cuda":  # the copy is asynchronous from pinned memory: count it whole (the GPU waits for it anyway)
                torch.cuda.current_stream(device).synchronize()
            data_time = time.perf_counter() - t0  # waiting for the prefetched batch, and its copy to the device
            data_parts = {"wait": waited, "copy": time.perf_counter() - t_copy}
            # every objective predicts a fixed number of targets per sequence: the global count is
            # known without a collective
            global_targets = o.global_batch * objective.targets_per_sequence
            loss_sum = torch.zeros((), device=device)
            z_sum = torch.zeros((), device=device)
            model.train()
            for i in range(accum):
                micro = batch[i * o.micro_batch : (i + 1) * o.micro_batch]
                loss, z, _ = loss_fn(micro.inputs, micro.targets, micro.prefix)
                if i == accum - 1:  # the gathered parameters are alive between forward and backward
                    after_forward = model_state_bytes(model, optimizer)
                # FSDP averages gradients over processes, so scale by world / global count: the
                # result is the mean over every target token of the step, however it was split
                (loss * world / global_targets).backward()
                loss_sum += loss.detach()
                z_sum += z.detach()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), o.grad_clip)
            grad_norm = grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm
            optimizer.step()
            after_step = model_state_bytes(model, optimizer)
            optimizer.zero_grad(set_to_none=True)
            state_peak = max(after_forward, after_step, key=lambda parts: sum(parts.values()))
            state_max = torch.tensor([sum(state_peak.values())], device=device)
            dist.all_reduce(state_max, op=dist.ReduceOp.MAX)
            lr = scheduler.get_last_lr()[0]
            scheduler.step()
            totals = torch.stack([loss_sum, z_sum])
            dist.all_reduce(totals)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            took = time.perf_counter() - t0
            tokens_per_s = o.global_batch * cfg.model.seq_len / took  # positions processed (MLM predicts only 15% of them)
            record = {
                "step": step + 1,
                "loss": totals[0].item() / global_targets,
                "z_loss": totals[1].item() / global_targets,
                "lr": lr,
                "grad_norm": grad_norm.item(),
                "tokens_per_s": tokens_per_s,
                "mfu": fpt * tokens_per_s / (peak * world) if peak else None,
                "data_time_share": data_time / took,
                "data_time_s": {"total": data_time, **data_parts},
                "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
                # parameters, gradients, optimizer state and gathered parameters of the fullest
                # process, at its fuller moment (end of forward, or after the optimizer step); the
                # parts are those of the process that logs
                "model_state_bytes": int(state_max.item()),
                "model_state_parts": state_peak,
            }
            if (step + 1) % cfg.log.val_every == 0 and val_streams:
                record["val_loss"] = evaluate(model, val_streams, cfg, objective, rank, world, device)
            if rank == 0 and (step + 1) % cfg.log.every == 0:
                metrics_file.write(json.dumps(record) + "\n")
                metrics_file.flush()
                bar.set_postfix(loss=f"{record['loss']:.3f}", lr=f"{lr:.2e}")
            logged.append(record)
            bar.update(1)
            last = step + 1 == o.steps or step + 1 == cfg.stop_after
            if cfg.checkpoint.every and (step + 1) % cfg.checkpoint.every == 0 or last:
                ckpt.save(step + 1, model, optimizer, scheduler, data_state, rank)
            if step + 1 == cfg.stop_after:
                break
    finally:
        batches.close()
    bar.close()
    if metrics_file:
        metrics_file.close()
    return logged


@torch.no_grad()
def evaluate(model, streams, cfg: TrainConfig, objective: Objective, rank: int, world: int, device) -> float:
    """Mean cross-entropy of the objective's targets over a fixed slice of the held-out documents
    (the same slice, and the same masks, every time)."""
    model.eval()
    sampler = MixtureSampler(streams, cfg.model.seq_len)
    total = torch.zeros(2, device=device)
    n_rows = cfg.optim.micro_batch * world
    for _ in range(cfg.log.val_batches):
        first = sampler.state.sequences
        rows = sampler.batch(0, n_rows, rank, world)
        batch = objective.batch(rows, list(range(first + rank, first + n_rows, world))).to(device)
        loss, _, n = model(batch.inputs, batch.prefix, batch.targets)
        total += torch.stack([loss.detach(), n.float()])
    dist.all_reduce(total)
    model.train()
    return (total[0] / total[1]).item()
