"""The training loop: objectives, distillation, AdamW, schedules, global-token loss normalisation,
exact resume. Its components are files beside it (torchtitan's layout): the config and its
resolution, ``parallel`` (FSDP2, precision, compile, activation checkpointing), ``checkpoint``,
``metrics``, ``data``, ``objectives``, ``optim`` and ``schedule``."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from trainer.checkpoint import Checkpointer
from trainer.config import OptimConfig, TrainConfig
from trainer.cpu_allocator import keep_freed_memory
from trainer.data import MixtureSampler, StepBatches, load_streams
from trainer.distill import distill_loss, load_teacher
from trainer.distributed import init_distributed
from trainer.eval import eval_bpb, load_eval_text
from trainer.memory import model_state_bytes
from trainer.metrics import MetricsLog, flops_per_token, peak_flops, throughput
from trainer.model import Transformer, lm_loss
from trainer.objectives import Batch, Objective, make_objective
from trainer.optim import adamw
from trainer.parallel import parallelize, prepare_teacher
from trainer.resolve import resolve, special_ids
from trainer.schedule import lr_lambda
from trainer.storage import is_remote, local_manifest, local_out_dir
from trainer.store_checkpoint import StoreCheckpointer

logger = logging.getLogger(__name__)


def forward_loss(model, cfg: TrainConfig, teacher: Transformer | None = None):
    """(inputs, targets, prefix) -> (loss sum, z sum, target count).

    Precision and compilation are the model's own, set by ``trainer.parallel``. Without a teacher
    the output head and the loss run inside the model's forward, a chunk of positions at a time,
    with their own kernel (``trainer.chunked_loss``). With a teacher the whole logits are needed:
    the loss is the distillation loss (``trainer.distill``) plus the student's z-loss.
    """
    o, d = cfg.optim, cfg.distill

    def step(inputs, targets, prefix=None):
        if teacher is None:
            return model(inputs, prefix, targets, o.z_loss, o.label_smoothing)
        logits = model(inputs, prefix)
        with torch.no_grad():
            teacher_logits = teacher(inputs, prefix)
        loss, _ = distill_loss(logits, teacher_logits, targets, d.alpha, d.temperature)
        _, z, n = lm_loss(logits, targets, 0.0, 0.0)
        return loss + o.z_loss * z, z, n

    return step


def micro_batches_per_step(cfg: OptimConfig, world: int) -> int:
    per_rank = cfg.global_batch // world
    if cfg.global_batch % world or per_rank % cfg.micro_batch:
        raise ValueError(f"optim.global_batch ({cfg.global_batch}) must split into {world} processes x micro-batches of {cfg.micro_batch}")
    return per_rank // cfg.micro_batch


def load_checked_teacher(cfg: TrainConfig, world: int, device: torch.device) -> Transformer:
    """``distill.teacher``'s model, refused unless its vocabulary and attention cover the student's."""
    teacher = load_teacher(cfg.distill.teacher, device)
    if teacher.cfg.vocab_size < cfg.model.vocab_size or teacher.cfg.bidirectional != cfg.model.bidirectional:
        raise ValueError(f"distill.teacher {cfg.distill.teacher}: its vocabulary ({teacher.cfg.vocab_size}) and attention "
                         f"(bidirectional {teacher.cfg.bidirectional}) must cover the student's ({cfg.model.vocab_size}, {cfg.model.bidirectional})")
    return prepare_teacher(teacher, cfg.parallel, world, device.type)


class Trainer:
    """The live parts of one run, built from a resolved config: data, model, optimizer, loss, checkpoints."""

    def __init__(self, cfg: TrainConfig, manifest: dict, streams: tuple[dict, dict], rank: int, world: int, device: torch.device):
        self.cfg, self.rank, self.world, self.device = cfg, rank, world, device
        o = cfg.optim
        self.accum = micro_batches_per_step(o, world)
        self.objective = make_objective(cfg.objective, cfg.model.seq_len, special_ids(manifest), manifest["tokenizer"]["vocab_size"], o.seed)
        # every objective predicts a fixed number of targets per sequence: the global count is
        # known without a collective
        self.global_targets = o.global_batch * self.objective.targets_per_sequence
        train_streams, self.val_streams = streams
        schedule = [(int(s), r) for s, r in cfg.data.schedule] if cfg.data.schedule else None
        self.sampler = MixtureSampler(train_streams, cfg.model.seq_len, cfg.data.ratios, schedule)
        torch.manual_seed(o.seed)
        model = Transformer(cfg.model).to(device)
        self.flops_per_token = flops_per_token(model)
        self.model = parallelize(model, cfg.parallel, world, device.type)
        teacher = load_checked_teacher(cfg, world, device) if cfg.distill.teacher else None
        self.optimizer = adamw(self.model, o, fused=device.type == "cuda" and not cfg.parallel.cpu_offload)  # offloaded state steps on the CPU
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(o))
        self.loss_fn = forward_loss(self.model, cfg, teacher)
        # on a store, metrics.jsonl and config.json go to a node-local mirror copied up with each checkpoint
        self.out = local_out_dir(cfg.out_dir, rank)
        self.checkpointer = (StoreCheckpointer(cfg.out_dir, cfg.checkpoint.keep, self.out) if is_remote(cfg.out_dir)
                             else Checkpointer(self.out / "checkpoints", cfg.checkpoint.keep))
        # held-out bits per byte per domain on the reference text, at every validation
        # the manifest as given: a store's names the tokenizer beside it, which its node-local copy lacks
        self.eval_text = load_eval_text(cfg.log.eval_text, cfg.data.manifest) if cfg.log.eval_text else {}

    def resume(self) -> int:
        """The step the latest complete checkpoint ended (its state loaded), or 0."""
        latest = self.checkpointer.latest()
        if latest is None:
            return 0
        step = self.checkpointer.load(latest, self.model, self.optimizer, self.scheduler, self.sampler, self.rank)
        if self.rank == 0:
            logger.info("resumed from %s at step %d", latest, step)
        return step

    def make_batch(self, step: int) -> tuple[Batch, dict]:
        """This process's share of ``step``'s batch, and the sampler's state after it."""
        n, first = self.cfg.optim.global_batch, self.sampler.state.sequences
        rows = self.sampler.batch(step, n, self.rank, self.world)
        return self.objective.batch(rows, list(range(first + self.rank, first + n, self.world))), self.sampler.state_dict()

    def optimizer_step(self, batch: Batch) -> dict:
        """Forward and backward over the micro-batches of ``batch``, then one optimizer step; the
        step's loss, z-loss, lr, gradient norm and model state, over every process."""
        o, model, optimizer, world = self.cfg.optim, self.model, self.optimizer, self.world
        loss_sum = torch.zeros((), device=self.device)
        z_sum = torch.zeros((), device=self.device)
        model.train()
        for i in range(self.accum):
            micro = batch[i * o.micro_batch : (i + 1) * o.micro_batch]
            loss, z, _ = self.loss_fn(micro.inputs, micro.targets, micro.prefix)
            if i == self.accum - 1:  # the gathered parameters are alive between forward and backward
                after_forward = model_state_bytes(model, optimizer)
            # FSDP averages gradients over processes, so scale by world / global count: the
            # result is the mean over every target token of the step, however it was split
            (loss * world / self.global_targets).backward()
            loss_sum += loss.detach()
            z_sum += z.detach()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), o.grad_clip)
        grad_norm = grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm
        optimizer.step()
        after_step = model_state_bytes(model, optimizer)
        optimizer.zero_grad(set_to_none=True)
        state_peak = max(after_forward, after_step, key=lambda parts: sum(parts.values()))
        state_max = torch.tensor([sum(state_peak.values())], device=self.device)
        dist.all_reduce(state_max, op=dist.ReduceOp.MAX)
        lr = self.scheduler.get_last_lr()[0]
        self.scheduler.step()
        totals = torch.stack([loss_sum, z_sum])
        dist.all_reduce(totals)
        return {
            "loss": totals[0].item() / self.global_targets,
            "z_loss": totals[1].item() / self.global_targets,
            "lr": lr,
            "grad_norm": grad_norm.item(),
            # parameters, gradients, optimizer state and gathered parameters of the fullest
            # process, at its fuller moment (end of forward, or after the optimizer step); the
            # parts are those of the process that logs
            "model_state_bytes": int(state_max.item()),
            "model_state_parts": state_peak,
        }

    def timed_step(self, step: int, batches: StepBatches, peak: float | None) -> tuple[dict, dict]:
        """``step`` with its wait for data timed: (its metrics, the sampler's state after its batch)."""
        cuda = self.device.type == "cuda"
        t0 = time.perf_counter()
        if cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
        cpu_batch, data_state, waited = batches.get(step)
        t_copy = time.perf_counter()
        batch = cpu_batch.to(self.device)
        if cuda:  # the copy is asynchronous from pinned memory: count it whole (the GPU waits for it anyway)
            torch.cuda.current_stream(self.device).synchronize()
        data_time = time.perf_counter() - t0  # waiting for the prefetched batch, and its copy to the device
        data_parts = {"wait": waited, "copy": time.perf_counter() - t_copy}
        record = {"step": step + 1, **self.optimizer_step(batch)}
        if cuda:
            torch.cuda.synchronize(self.device)
        took = time.perf_counter() - t0
        positions = self.cfg.optim.global_batch * self.cfg.model.seq_len
        record |= throughput(positions, took, data_time, data_parts, self.flops_per_token, peak, self.world)
        record["peak_memory_gib"] = torch.cuda.max_memory_allocated(self.device) / 2**30 if cuda else None
        return record, data_state

    def run(self, progress: bool = True) -> list[dict]:
        """Train from the latest checkpoint to ``optim.steps`` (or ``stop_after``); the step metrics this process logged."""
        cfg, o, rank = self.cfg, self.cfg.optim, self.rank
        start = self.resume()
        out = self.out
        if rank == 0:
            out.mkdir(parents=True, exist_ok=True)
            (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
        metrics = MetricsLog(out / "metrics.jsonl", start, cfg.log.every, rank)
        peak = peak_flops(cfg.log, self.device)
        bar = tqdm(total=o.steps, initial=start, desc="train", disable=not (progress and rank == 0))
        end = cfg.stop_after if cfg.stop_after and start < cfg.stop_after < o.steps else o.steps
        # the next steps' batches are built in a worker process while this one trains (data.prefetch)
        batches = StepBatches(self.make_batch, start, end, ahead=cfg.data.prefetch, pin_memory=self.device.type == "cuda")
        logged: list[dict] = []
        try:
            for step in range(start, end):
                record, data_state = self.timed_step(step, batches, peak)
                if (step + 1) % cfg.log.val_every == 0 and self.val_streams:
                    record["val_loss"] = evaluate(self.model, self.val_streams, cfg, self.objective, rank, self.world, self.device)
                if (step + 1) % cfg.log.val_every == 0:
                    record.update(eval_bpb(self.model, self.eval_text, cfg.model.seq_len, o.micro_batch, self.device, rank, self.world))
                if metrics.write(record):
                    bar.set_postfix(loss=f"{record['loss']:.3f}", lr=f"{record['lr']:.2e}")
                logged.append(record)
                bar.update(1)
                last = step + 1 == o.steps or step + 1 == cfg.stop_after
                if cfg.checkpoint.every and (step + 1) % cfg.checkpoint.every == 0 or last:
                    self.checkpointer.save(step + 1, self.model, self.optimizer, self.scheduler, data_state, rank)
                if step + 1 == cfg.stop_after:
                    break
        finally:
            batches.close()
            metrics.close()
        bar.close()
        return logged


def train(cfg: TrainConfig, progress: bool = True) -> list[dict]:
    """Train (or resume) per ``cfg``, resolved first against its data; returns the step metrics this process logged."""
    rank, world, device = init_distributed()
    if device.type == "cpu":
        keep_freed_memory()
    # a store's manifest and shards are cached on this node first
    train_streams, val_streams, manifest = load_streams(local_manifest(cfg.data.manifest), cfg.data.val_fraction)
    cfg = resolve(cfg, manifest)  # from here on the config does not change (it is frozen)
    return Trainer(cfg, manifest, (train_streams, val_streams), rank, world, device).run(progress)


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
