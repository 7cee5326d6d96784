"""``python -m trainer --data runs/<id>/tokens [--preset tiny] [--config x.yaml] [section.field=value ...]``.

Also under ``torchrun --nproc_per_node=N -m trainer ...``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

import torch.distributed as dist

from configs.overrides import Override
from tokenizer.files import write_error
from trainer.config import PRESETS, load_train_config
from trainer.train import train


def _fail(out_dir: str | None, exc: Exception) -> int:
    """The error for the user, and in ``<out>/error.txt`` for the service to show (not the job's log)."""
    print(f"error: {exc}", file=sys.stderr)
    if out_dir and os.environ.get("RANK", "0") == "0":
        write_error(out_dir, f"{exc}\n")
    return 2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Overrides may come anywhere among the options (``--data x optim.steps=16 --out y stop_after=8``)."""
    parser = argparse.ArgumentParser(prog="python -m trainer", description="Pretrain a decoder-only transformer on token shards.")
    parser.add_argument("--data", required=True, help="a curation run's tokens/ folder or its manifest.json")
    parser.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    parser.add_argument("--config", help="YAML on top of the preset")
    parser.add_argument("--out", help="output folder (metrics.jsonl, checkpoints/)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("overrides", nargs="*", metavar="section.field=value")
    return parser.parse_intermixed_args(argv)


def config_overrides(args: argparse.Namespace) -> list[Override]:
    """The options' paths, set as given (read as YAML, ``[x]`` would become a list), then the user's overrides."""
    return [("data.manifest", args.data), *([("out_dir", args.out)] if args.out else []), *args.overrides]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides = config_overrides(args)
    try:
        cfg = load_train_config(args.preset, args.config, overrides)
    except (ValueError, OSError) as exc:
        return _fail(args.out, exc)
    try:
        train(cfg, progress=not args.no_progress)
    except (ValueError, FileNotFoundError) as exc:  # a setting the data, the teacher or the device cannot meet
        return _fail(cfg.out_dir, exc)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
