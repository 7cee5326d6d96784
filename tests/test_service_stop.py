"""``python -m service stop``: the local Ray head the service started is stopped, and only that one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from service import local_ray
from service.local_api import ROOT


def _alive(pgid: int, wait_s: float = 15.0) -> bool:
    """Whether a process of the group still runs (zombies left for a reaper do not count)."""
    deadline = time.monotonic() + wait_s
    while True:
        states = subprocess.run(["ps", "-e", "-o", "pgid=,stat="], capture_output=True, text=True).stdout.split("\n")
        running = [line for line in states if line.split() and int(line.split()[0]) == pgid and not line.split()[1].startswith("Z")]
        if not running or time.monotonic() > deadline:
            return bool(running)
        time.sleep(0.2)


def test_service_stop_stops_the_recorded_local_ray_head(tmp_path):
    node = local_ray.start_head(num_cpus=1, log_dir=tmp_path)
    try:
        (tmp_path / "ray_head.json").write_text(json.dumps(node.to_dict()))  # as the service records it
        env = {**os.environ, "CURATION_STATE_DIR": str(tmp_path), "CURATION_API_TOKEN": "t" * 16}
        done = subprocess.run([sys.executable, "-m", "service", "stop"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and "stopped the local Ray head" in done.stdout, done.stderr
        assert not _alive(node.pgid) and not (tmp_path / "ray_head.json").exists()
        again = subprocess.run([sys.executable, "-m", "service", "stop"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert again.returncode == 0 and "nothing to stop" in again.stdout
    finally:
        local_ray.stop_node(node.pgid)
