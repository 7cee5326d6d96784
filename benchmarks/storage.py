"""Training on object storage against local disk: the same run reading its token shards from S3
(moto's server on loopback) and checkpointing there, and reading and writing local files.

    python -m benchmarks.storage [--tokens runs/sample/tokens] [--steps 20] [--checkpoint-every 10] \
        [--out benchmarks/results/storage-2core.txt]

Without ``--tokens`` the shards are synthetic (scripts/s3_server.py). Each run is a fresh
``python -m trainer`` (one process): its wall time covers start, the shards' download to the
node's cache (S3, cold cache), every step and every DCP checkpoint. Printed per run: wall time and
its ratio to the local run (the baseline, measured in the same invocation), mean step time, the
data loader's share of step time (the trainer's ``data_time_share``: waiting for the prefetched
batch and its copy), the checkpoints' share of the wall time, and store requests retried.
A loopback S3 has no network latency or bandwidth limit: the ratio is the protocol's cost
(HTTP, signing, s3fs), a floor for a real store.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import ROOT, machine, report, versions  # noqa: E402

MODEL = ["model.d_model=128", "model.n_layers=2", "model.n_heads=4", "model.seq_len=128", "optim.global_batch=16",
         "optim.micro_batch=8", "parallel.mixed_precision=fp32", "log.val_every=100000"]
TOKENS_PER_STEP = 16 * 128  # global_batch x seq_len above


def run(data: str, out: str, steps: int, every: int, env: dict) -> dict:
    cmd = [sys.executable, "-m", "trainer", "--data", data, "--out", out, "--no-progress", *MODEL,
           f"optim.steps={steps}", f"checkpoint.every={every}"]
    start = time.perf_counter()
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - start
    if result.returncode:
        raise SystemExit(result.stderr[-3000:])
    return {"wall": wall}


def metrics_of(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def summarise(name: str, wall: float, metrics: list[dict], base: float, retried: int | None) -> str:
    steps = [TOKENS_PER_STEP / m["tokens_per_s"] for m in metrics[1:]]
    step = statistics.median(steps)
    share = statistics.mean(m["data_time_share"] for m in metrics[1:])
    rest = wall - sum(steps) - TOKENS_PER_STEP / metrics[0]["tokens_per_s"]  # start, download, checkpoints
    return (f"{name:<34}{wall:>8.1f}{wall / base:>9.2f}x{step * 1000:>12.0f}{share * 100:>12.2f}%{rest:>10.1f}"
            f"{'-' if retried is None else retried:>9}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", help="a curation run's tokens/ folder (default: synthetic shards)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--checkpoint-every", type=int, default=10)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "storage-2core.txt"))
    args = parser.parse_args()

    import s3fs

    from scripts.s3_server import start_moto, synthetic_tokens, upload_folder

    tmp = Path(tempfile.mkdtemp(prefix="bench-storage-"))
    tokens = Path(args.tokens) if args.tokens else synthetic_tokens(tmp / "tokens", docs=1500)
    shard_bytes = sum(p.stat().st_size for p in tokens.glob("*.arrow"))
    server, endpoint = start_moto()
    fs = s3fs.S3FileSystem(key="bench", secret="bench", endpoint_url=endpoint)
    fs.mkdir("bench")
    upload_folder(fs, tokens, "bench/tokens")
    base_env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(os.cpu_count() or 1)}
    s3_env = {**base_env, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
              "AWS_ENDPOINT_URL": endpoint, "TRAINER_CACHE_DIR": str(tmp / "cache")}
    rows = []
    local = run(str(tokens), str(tmp / "local"), args.steps, args.checkpoint_every, base_env)
    base = local["wall"]
    rows.append(summarise("local disk (baseline)", base, metrics_of((tmp / "local" / "metrics.jsonl").read_text()), base, None))
    for name, out in (("S3 on loopback, cold shard cache", "bench/cold"), ("S3 on loopback, warm shard cache", "bench/warm")):
        result = run("s3://bench/tokens", f"s3://{out}", args.steps, args.checkpoint_every, s3_env)
        stats = json.loads(fs.cat_file(f"{out}/store_stats.json"))
        rows.append(summarise(name, result["wall"], metrics_of(fs.cat_file(f"{out}/metrics.jsonl").decode()), base, stats["retried"]))
    server.stop()

    lines = [
        f"machine: {machine()}",
        f"versions: {versions('torch', 's3fs', 'botocore', 'moto', 'pyarrow')}",
        f"run: python -m trainer, 1 process, {' '.join(MODEL)}, {args.steps} steps, DCP checkpoint every {args.checkpoint_every}",
        f"shards: {'synthetic' if not args.tokens else args.tokens}, {len(list(tokens.glob('*.arrow')))} files, {shard_bytes / 2**20:.1f} MiB",
        "",
        f"{'run':<34}{'wall s':>8}{'vs local':>10}{'step ms':>12}{'data share':>13}{'other s':>10}{'retried':>9}",
        *rows,
        "",
        "step ms: median step after the first; data share: mean of the trainer's data_time_share (wait for the",
        "prefetched batch + copy) over steps 2..; other s: wall minus steps (start, shard download, checkpoints).",
    ]
    report("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
