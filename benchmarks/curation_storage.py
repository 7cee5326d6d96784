"""Curation on object storage against local disk: the bundled run with its sources and its whole run
directory on S3 (moto's server on loopback), and the same run on local files.

    python -m benchmarks.curation_storage [--out benchmarks/results/curation_storage-2core.txt]

Each run is a fresh ``python -m pipelines.web_corpus`` (its own local Ray): its wall time covers
starting Ray, listing the sources, every phase, and every upload. Printed per run: wall time and
its ratio to the local run (the baseline, measured in the same invocation), the run's own wall
time from ``stats.json``, the requests the store answered and those retried. A loopback S3 has no
network latency or bandwidth limit: the ratio is the protocol's cost (HTTP, signing, s3fs, a local
staging file per output), a floor for a real store. Both runs' outputs are checked to be the
recorded bundled run's (tests/data/bundled_run_fingerprint.json).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import ROOT, machine, report, versions  # noqa: E402


def run(args: list[str], env: dict, cwd: Path) -> float:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "pipelines.web_corpus", "--no-progress", *args], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=3600)
    if result.returncode:
        raise SystemExit(result.stderr[-3000:])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "curation_storage-2core.txt"))
    args = parser.parse_args()

    import s3fs

    from tests.run_fingerprint import differences, run_fingerprint
    from scripts.s3_server import FlakyProxy, bundled_config_on_store, start_moto, upload_corpus

    recorded = json.loads((ROOT / "tests" / "data" / "bundled_run_fingerprint.json").read_text())
    tmp = Path(tempfile.mkdtemp(prefix="bench-curation-storage-"))
    server, endpoint = start_moto()
    host, port = endpoint.removeprefix("http://").split(":")
    proxy = FlakyProxy((host, int(port)), every=0)  # fails nothing: it counts the requests
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    fs = s3fs.S3FileSystem(key="bench", secret="bench", endpoint_url=endpoint, use_listings_cache=False)
    fs.mkdir("bench")
    upload_corpus(fs, "bench/sources")
    base_env = {**os.environ, "PYTHONPATH": str(ROOT)}
    s3_env = {**base_env, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
              "AWS_ENDPOINT_URL": proxy.url, "TRAINER_CACHE_DIR": str(tmp / "cache")}

    local_wall = run([f"runs_dir={tmp / 'runs'}"], base_env, tmp)
    local_stats = json.loads((tmp / "runs" / "sample" / "stats.json").read_text())
    assert differences(recorded, run_fingerprint(tmp / "runs" / "sample")) == [], "the local run is not the recorded one"
    config = bundled_config_on_store(tmp / "s3.json", "s3://bench/sources", "s3://bench/runs", "sample")
    s3_wall = run(["--config", str(config)], s3_env, tmp)
    requests = proxy.seen
    s3_stats = json.loads(fs.cat_file("bench/runs/sample/stats.json"))
    fs.get("bench/runs/sample", str(tmp / "fetched"), recursive=True)
    assert differences(recorded, run_fingerprint(tmp / "fetched")) == [], "the S3 run is not the recorded one"
    proxy.shutdown()
    server.stop()

    rows = [
        f"{'local disk (baseline)':<36}{local_wall:>8.1f}{1:>9.2f}x{local_stats['wall_time_s']:>10.1f}{'-':>10}{'-':>9}",
        f"{'S3 on loopback (sources + run dir)':<36}{s3_wall:>8.1f}{s3_wall / local_wall:>9.2f}x{s3_stats['wall_time_s']:>10.1f}"
        f"{requests:>10}{s3_stats['store']['retried']:>9}",
    ]
    lines = [
        f"machine: {machine()}",
        f"versions: {versions('ray', 's3fs', 'botocore', 'moto', 'pyarrow')}",
        "run: python -m pipelines.web_corpus, the bundled run (9 WARC files, every phase), its own local Ray",
        "",
        f"{'run':<36}{'wall s':>8}{'vs local':>10}{'run s':>10}{'requests':>10}{'retried':>9}",
        *rows,
        "",
        "wall s: the process, Ray's start included; run s: stats.json's wall_time_s; requests: HTTP requests the",
        "store answered (counted by a pass-through proxy); both runs' outputs equal the recorded fingerprint.",
    ]
    report("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
