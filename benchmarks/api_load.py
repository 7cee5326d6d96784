"""API latency under load while a curation job runs: p50/p99 of job-status and funnel reads.

    python -m benchmarks.api_load [--clients 8] [--seconds 20]

Starts a Ray head and the API (``python -m service``, SQLite store) on loopback, submits the
bundled-corpus curation job, and while it runs, ``--clients`` threads read ``GET /v1/jobs/{id}``
and ``GET /v1/jobs/{id}/funnel`` in a closed loop for ``--seconds``. The baseline, measured in the
same run and under the same load, is ``GET /healthz`` (the framework's floor: routing, JSON, no
store or file reads). Goal of the service issue: p99 < 100 ms for status and funnel reads.
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine  # noqa: E402
from service import local_ray  # noqa: E402
from service.local_api import ApiProcess  # noqa: E402


def hammer(port: int, paths: list[str], until: float, out: dict[str, list[float]], lock: threading.Lock) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)  # keep-alive, like a polling client
    local: dict[str, list[float]] = {p: [] for p in paths}
    i = 0
    while time.monotonic() < until:
        path = paths[i % len(paths)]
        i += 1
        start = time.perf_counter()
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        elapsed = time.perf_counter() - start
        if response.status in (200, 404):  # 404: the funnel before the first shard completes
            local[path].append(elapsed)
    conn.close()
    with lock:
        for path, values in local.items():
            out.setdefault(path, []).extend(values)


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[int(q * 1000) - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="api-load-"))
    head = local_ray.start_head(log_dir=tmp)
    api = ApiProcess(tmp / "state", tmp / "runs", head.dashboard_url)
    try:
        status, job = api.call("POST", "/v1/jobs/curation", {"config": {}})
        assert status == 201, job
        api.wait(job["id"], until=("running",))
        paths = {"status": f"/v1/jobs/{job['id']}", "funnel": f"/v1/jobs/{job['id']}/funnel", "baseline": "/healthz"}
        samples: dict[str, list[float]] = {}
        lock = threading.Lock()
        until = time.monotonic() + args.seconds
        threads = [threading.Thread(target=hammer, args=(api.port, list(paths.values()), until, samples, lock)) for _ in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        state_after = api.call("GET", f"/v1/jobs/{job['id']}")[1]["state"]
        final = api.wait(job["id"], timeout_s=600)
    finally:
        api.kill()
        local_ray.stop_node(head.pgid)
    print(f"machine: {machine()}")
    print(f"load: {args.clients} keep-alive clients on loopback for {args.seconds:.0f} s while the bundled-corpus job ran "
          f"(job state after the load: {state_after}; finished: {final['state']})\n")
    base = samples[paths["baseline"]]
    base_p50, base_p99 = percentile(base, 0.5), percentile(base, 0.99)
    print(f"{'endpoint':<28}{'requests':>9}{'p50 ms':>9}{'p99 ms':>9}{'p99 / healthz':>15}{'goal p99<100ms':>16}")
    for name, path in paths.items():
        values = samples[path]
        p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
        goal = "-" if name == "baseline" else ("met" if p99 < 0.1 else "NOT met")
        print(f"{name + ' ' + path.split('/')[-1][:12]:<28}{len(values):>9}{1e3 * p50:>9.1f}{1e3 * p99:>9.1f}{p99 / base_p99:>14.2f}x{goal:>16}")
    print(f"\nbaseline: GET /healthz in the same run, p50 {1e3 * base_p50:.1f} ms, p99 {1e3 * base_p99:.1f} ms")


if __name__ == "__main__":
    main()
