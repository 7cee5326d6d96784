"""Training across nodes on Ray Train: the same ``trainer.train.train`` in every worker of a
``ray.train.torch.TorchTrainer``, FSDP2 over the process group Ray Train makes (gloo on CPUs,
NCCL on GPUs).

    python -m trainer.ray_train --data <tokens dir | manifest.json | s3://.../tokens> --workers 2 \
        [--cpus-per-worker 1] [--gpus-per-worker 0] [--storage <folder | s3://bucket/run>] \
        [--max-failures 3] [--preset tiny] [--config x.yaml] [section.field=value ...]

joins the cluster at ``RAY_ADDRESS`` or starts a local Ray. ``torchrun`` (``python -m trainer``)
stays the way to train on one node.

A lost worker (its process or its node) fails the attempt; Ray Train's ``FailureConfig`` starts a
new worker group, up to ``max_failures`` times, and the trainer, as on any start, resumes from the
latest complete checkpoint in the run's storage (DCP state, the sampler's position, RNG), so the
loss trajectory is the one an uninterrupted run follows. Ray Train waits without limit for the
resources of a new worker group; ``--capacity-wait-s`` bounds that wait (``trainer.capacity``), so
a run whose lost node is never replaced fails with a message instead of hanging. The trainer
checkpoints to the run's storage itself rather than through ``ray.train.report(checkpoint=...)``:
DCP writes every rank's shard straight to the store, where Ray's report would stage a copy and
upload it again.

Each worker records where it runs in ``<storage>/workers/rank-<r>.json`` (node, pid, GPUs, the
start of its attempt); Ray's own view, live, is the dashboard's ``/api/train/v2/runs/v1``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path

from tokenizer.files import write_error
from trainer import storage
from trainer.capacity import CapacityWatch
from trainer.config import PRESETS, TrainConfig, load_train_config, validate_train_config

logger = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# an autoscaler brings a node in minutes; a run that lacks its resources for longer fails
DEFAULT_CAPACITY_WAIT_S = 600.0


def _record_worker(out_dir: str, rank: int, gpu_ids: list) -> None:
    import ray

    state = {"rank": rank, "pid": os.getpid(), "host": socket.gethostname(), "node_id": ray.get_runtime_context().get_node_id(),
             "gpu_ids": [str(g) for g in gpu_ids], "started": time.time()}
    storage.write_bytes(storage.join(out_dir, "workers", f"rank-{rank}.json"), json.dumps(state).encode())


def worker_loop(config: dict) -> None:
    """One Ray Train worker: the trainer, on the process group and device Ray Train gave it."""
    import ray.train
    import ray.train.torch
    import torch

    from trainer.train import train

    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    cfg = validate_train_config(config["cfg"])
    context = ray.train.get_context()
    gpu_ids = []
    if torch.cuda.is_available():
        device = ray.train.torch.get_device()
        torch.cuda.set_device(device)
        gpu_ids = ray.get_gpu_ids()
    _record_worker(cfg.out_dir, context.get_world_rank(), gpu_ids)
    logged = train(cfg, progress=False)
    last = logged[-1] if logged else {}
    # a barrier across the workers; Ray keeps rank 0's numbers as the run's final metrics
    ray.train.report({k: last[k] for k in ("step", "loss", "lr", "tokens_per_s") if k in last})


def _ray_storage(out_dir: str):
    """(storage_path, storage_filesystem) for Ray Train's own run state, beside the trainer's."""
    if not storage.is_remote(out_dir):
        return str(Path(out_dir, "ray").resolve()), None
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    from fsspec.core import url_to_fs

    fs, path = url_to_fs(out_dir, **storage.store_options(out_dir, counted=False))
    return f"{path.rstrip('/')}/ray", PyFileSystem(FSSpecHandler(fs))


def launch(cfg: TrainConfig, workers: int, cpus_per_worker: float = 1.0, gpus_per_worker: float = 0.0,
           max_failures: int = 3, name: str = "train"):
    """Run ``cfg`` on ``workers`` Ray Train workers of the connected Ray cluster, to its end;
    returns Ray Train's ``Result``. ``cfg.out_dir`` (a folder every node sees, or an object store)
    holds checkpoints, metrics.jsonl and the workers' records. Blocks until the run ends."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    use_gpu = gpus_per_worker > 0
    resources = {"CPU": cpus_per_worker, **({"GPU": gpus_per_worker} if use_gpu else {})}
    storage_path, storage_fs = _ray_storage(cfg.out_dir)
    trainer = TorchTrainer(
        worker_loop,
        train_loop_config={"cfg": cfg.to_dict()},
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu, resources_per_worker=resources),
        run_config=RunConfig(name=name, storage_path=storage_path, storage_filesystem=storage_fs,
                             failure_config=FailureConfig(max_failures=max_failures)),
    )
    return trainer.fit()


def check_config(cfg: TrainConfig, workers: int) -> None:
    """What would fail in every worker, and so in every retry, fails here once, before any starts."""
    from trainer.resolve import manifest_file, resolve

    data = cfg.data.manifest
    manifest = json.loads(storage.read_bytes(storage.remote_manifest_url(data) if storage.is_remote(data) else str(manifest_file(data))))
    resolved = resolve(cfg, manifest)
    o = resolved.optim
    if o.global_batch % workers or (o.global_batch // workers) % o.micro_batch:
        raise ValueError(f"optim.global_batch ({o.global_batch}) must split into {workers} workers x micro-batches of {o.micro_batch}")


def entrypoint(data: str, storage_url: str, workers: int, cpus_per_worker: float = 1.0, gpus_per_worker: float = 0.0,
               max_failures: int = 3, preset: str = "tiny", overrides: list[str] | None = None) -> str:
    """The shell command of a Ray Train run, for the Ray Jobs API (``JobSubmissionClient.submit_job(
    entrypoint=...)``): the job's driver runs it and stopping the job stops the driver, with it Ray
    Train's controller and every worker. Nothing here imports Ray or torch."""
    import shlex

    args = ["python", "-m", "trainer.ray_train", "--data", data, "--storage", storage_url, "--workers", str(workers),
            "--cpus-per-worker", str(cpus_per_worker), "--gpus-per-worker", str(gpus_per_worker),
            "--max-failures", str(max_failures), "--preset", preset, *(overrides or [])]
    return shlex.join(args)


def _fail(out_dir: str, exc: BaseException) -> int:
    """The error for the user, and in ``<storage>/error.txt`` for the service to show."""
    print(f"error: {exc}", file=sys.stderr)
    write_error(out_dir, f"{exc}\n")
    return 2


def _give_up(out_dir: str):
    def on_timeout(message: str) -> None:
        _fail(out_dir, RuntimeError(message))
        sys.stderr.flush()
        # fit() is blocked in Ray Train's wait for resources; the run's controller and workers are
        # actors of this driver, and Ray ends them when it exits
        os._exit(2)

    return on_timeout


def _init_ray(workers: int, cpus_per_worker: float) -> None:
    import ray

    if os.environ.get("RAY_ADDRESS"):
        ray.init(logging_level="WARNING")
    else:  # a local Ray sized to the run: the workers' CPUs are reserved, not measured
        ray.init(num_cpus=max(os.cpu_count() or 1, int(workers * cpus_per_worker + 0.999)), include_dashboard=False, logging_level="WARNING")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.ray_train", description="Pretrain on token shards with Ray Train workers.")
    parser.add_argument("--data", required=True, help="a curation run's tokens/ folder or its manifest.json, local or s3://")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cpus-per-worker", type=float, default=1.0)
    parser.add_argument("--gpus-per-worker", type=float, default=0.0)
    parser.add_argument("--storage", help="the run's folder or s3:// prefix (checkpoints, metrics.jsonl); default: out_dir")
    parser.add_argument("--max-failures", type=int, default=3, help="lost workers (or nodes) recovered from before the run fails")
    parser.add_argument("--capacity-wait-s", type=float, default=DEFAULT_CAPACITY_WAIT_S,
                        help="fail once the cluster has lacked the workers' resources this long (a lost node not replaced); 0: wait forever")
    parser.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    parser.add_argument("--config", help="YAML on top of the preset")
    parser.add_argument("overrides", nargs="*", metavar="section.field=value")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    # paths are set as given, not read as YAML (``[x]`` would become a list)
    overrides = [("data.manifest", args.data), *([("out_dir", args.storage)] if args.storage else []), *args.overrides]
    out_dir = args.storage or "runs/train"
    try:
        cfg = load_train_config(args.preset, args.config, overrides)
        check_config(cfg, args.workers)
    except (ValueError, OSError) as exc:
        return _fail(out_dir, exc)
    _init_ray(args.workers, args.cpus_per_worker)
    need = {"CPU": args.workers * args.cpus_per_worker, "GPU": args.workers * args.gpus_per_worker}
    try:
        with CapacityWatch(need, args.capacity_wait_s, _give_up(cfg.out_dir)):
            result = launch(cfg, args.workers, args.cpus_per_worker, args.gpus_per_worker, args.max_failures)
    except Exception as exc:  # Ray Train's TrainingFailedError, after max_failures restarts
        return _fail(cfg.out_dir, exc)
    logger.info("finished: %s", result.metrics)
    return 0


if __name__ == "__main__":
    sys.exit(main())
