"""The API as a real process (``python -m service``) against a real Ray head: what the service
tests and the API load benchmark drive, as a client would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from service import local_ray

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "test-token-" + "x" * 16


class ApiProcess:
    def __init__(self, state_dir: Path, runs_dir: Path, ray_jobs_address: str, extra_env: dict | None = None):
        env = {
            **os.environ, "CURATION_STATE_DIR": str(state_dir), "CURATION_RUNS_DIR": str(runs_dir),
            "CURATION_DATA_ROOTS": f"{ROOT / 'data'}:{runs_dir}", "CURATION_API_TOKEN": TOKEN,
            "RAY_JOBS_ADDRESS": ray_jobs_address, "RAY_AUTH_MODE": "token", **(extra_env or {}),
        }
        local_ray.with_fresh_ports(lambda: self._start(env, Path(state_dir).parent), "the API", binder="uvicorn")

    def _start(self, env: dict, log_dir: Path) -> None:
        """Start the API on a freshly drawn port (``PortTaken``: it exited because that port was taken)."""
        self.port = local_ray.free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = open(log_dir / f"api-{self.port}.log", "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "service", "--port", str(self.port)], env=env, cwd=ROOT,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                self.log.close()
                taken = local_ray.port_was_taken(Path(self.log.name).read_text(errors="replace"))
                raise (local_ray.PortTaken if taken else RuntimeError)(f"the API did not start; see {self.log.name}")
            try:
                if self.call("GET", "/healthz")[0] == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.proc.kill()
                raise RuntimeError(f"the API did not start; see {self.log.name}")
            time.sleep(0.3)

    def call(self, method: str, path: str, body=None, token: str | None = TOKEN, raw: bytes | None = None, headers: dict | None = None):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        hdrs = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {}), **(headers or {})}
        req = urllib.request.Request(self.base + path, method=method, data=data, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                payload = resp.read()
                status = resp.status
        except urllib.error.HTTPError as exc:
            payload, status = exc.read(), exc.code
        try:
            return status, json.loads(payload)
        except ValueError:
            return status, payload.decode()

    def wait(self, job_id: str, until=("succeeded", "failed", "cancelled"), timeout_s: float = 300, seen: list | None = None) -> dict:
        deadline = time.monotonic() + timeout_s
        while True:
            status, job = self.call("GET", f"/v1/jobs/{job_id}")
            if status != 200:
                raise RuntimeError(f"GET /v1/jobs/{job_id}: {status} {job}")
            if seen is not None:
                seen.append(job)
            if job["state"] in until:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['state']} after {timeout_s} s")
            time.sleep(0.5)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.log.close()
