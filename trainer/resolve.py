"""A job's config resolved against its data, once, before training: what the trainer would
otherwise change while it runs is settled here, and the result is frozen.

- the vocabulary covers the tokenizer's (and the mask and sentinel ids, for mlm and span);
- a masked-LM objective makes the model bidirectional;
- the Noam schedule with ``optim.lr`` 0 takes the paper's peak, d^-0.5 * warmup^-0.5.

No torch: the resolved config is plain data, written to the run's ``config.json``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from tokenizer.special import special_tokens
from trainer.config import TrainConfig, validate_train_config
from trainer.schedule import noam_peak_lr

logger = logging.getLogger(__name__)


def manifest_file(data: str | Path) -> Path:
    """``data.manifest``: a manifest.json, or the tokens/ folder that holds it."""
    path = Path(data)
    return path / "manifest.json" if path.is_dir() else path


def read_manifest(data: str | Path) -> dict:
    return json.loads(manifest_file(data).read_text())


def special_ids(manifest: dict) -> dict:
    tokenizer = manifest["tokenizer"]
    # runs curated before the special ids were recorded have them at the same place
    return tokenizer.get("special") or special_tokens(tokenizer["vocab_size"])


def resolve(cfg: TrainConfig, manifest: dict) -> TrainConfig:
    """A new, frozen config for training on the shards of ``manifest``; ``cfg`` is left as it was."""
    tree = cfg.model_dump()
    model, optim = tree["model"], tree["optim"]
    text_vocab = manifest["tokenizer"]["vocab_size"]
    needed = special_ids(manifest)["vocab_size"] if cfg.objective.uses_special_ids else text_vocab
    model["vocab_size"] = max(model["vocab_size"], needed)
    if cfg.objective.bidirectional and not model["bidirectional"]:
        model["bidirectional"] = True
        logger.info("objective.kind=%s: model.bidirectional set to true", cfg.objective.kind)
    if cfg.optim.schedule == "noam" and cfg.optim.lr == 0:
        optim["lr"] = noam_peak_lr(cfg.model.d_model, max(1, cfg.optim.warmup_steps))
    return validate_train_config(tree).freeze()
