"""Knowledge distillation: a student trained against a frozen teacher, a finished run of ours.

loss = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * cross-entropy
(Hinton et al. 2015: T^2 keeps the soft term's gradients on the scale of the hard one), summed
over the positions that have a target, like ``lm_loss``, so the trainer normalises it the same way.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
import torch.nn.functional as F

from trainer.config_sections import ModelConfig
from trainer.model import Transformer


def load_teacher(run_dir: str | Path, device: torch.device) -> Transformer:
    """The latest complete checkpoint of a training run, in one process's memory, frozen, in eval mode.

    The checkpoint is torch.distributed.checkpoint's, written by any number of processes; each
    process of the student reads it whole (DCP reshards on load).
    """
    run = Path(run_dir)
    config = run / "config.json"
    if not config.is_file():
        raise FileNotFoundError(f"distill.teacher: {config} not found; give the folder of a finished training run")
    done = sorted((run / "checkpoints").glob("step-*/extra.json"))
    if not done:
        raise FileNotFoundError(f"distill.teacher: no complete checkpoint under {run / 'checkpoints'}")
    teacher = Transformer(ModelConfig(**json.loads(config.read_text())["model"])).to(device)
    state = {"model": teacher.state_dict()}
    dcp.load(state, checkpoint_id=str(done[-1].parent))
    teacher.load_state_dict(state["model"])
    teacher.eval()
    teacher.requires_grad_(False)
    return teacher


def distill_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor, alpha: float, temperature: float,
                 ignore_index: int = -100) -> tuple[torch.Tensor, torch.Tensor]:
    """(alpha * T^2 * KL + (1 - alpha) * CE, summed over target positions; the summed CE alone)."""
    v = student_logits.shape[-1]
    s = student_logits.float().reshape(-1, v)
    t = teacher_logits.float().reshape(-1, teacher_logits.shape[-1])[:, :v]
    flat = targets.reshape(-1)
    keep = flat != ignore_index
    s, t, flat = s[keep], t[keep], flat[keep]
    ce = F.cross_entropy(s, flat, reduction="sum")
    kl = F.kl_div(F.log_softmax(s / temperature, dim=-1), F.log_softmax(t / temperature, dim=-1), log_target=True, reduction="sum")
    return alpha * temperature**2 * kl + (1 - alpha) * ce, ce
