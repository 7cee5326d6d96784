"""Starting a local Ray head when a port drawn free is taken before Ray binds it.

A drawn port is free only when drawn: another process's outgoing connection can get it from the
same ephemeral range before ``ray start`` binds it (CI saw the GCS fail so, in a test that then
failed for no fault of its own). The head must start anyway, on other ports. The test takes the
dashboard's port: Ray refuses that one at once, where a taken GCS port costs ~40 s of its waiting.
"""

from __future__ import annotations

import logging
import socket

from service import local_ray


def test_a_head_whose_dashboard_port_is_taken_starts_on_other_ports(tmp_path, monkeypatch, caplog):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    real_free_ports, draws = local_ray.free_ports, []

    def first_draw_gives_the_taken_port(n: int) -> list[int]:
        ports = real_free_ports(n)
        draws.append(ports)
        return [ports[0], port, *ports[2:]] if len(draws) == 1 else ports  # (gcs, dashboard, agent, client)

    monkeypatch.setattr(local_ray, "free_ports", first_draw_gives_the_taken_port)
    node = None
    try:
        with caplog.at_level(logging.WARNING, logger="service.local_ray"):
            node = local_ray.start_head(num_cpus=1, log_dir=tmp_path)
        assert len(draws) == 2  # one failed start, then one on fresh ports
        assert node.dashboard_url == f"http://127.0.0.1:{draws[1][1]}" and draws[1][1] != port
        assert local_ray.dashboard_alive(node.dashboard_url)
        assert "a port was taken before Ray bound it" in caplog.text
        assert f"failed to bind to 127.0.0.1:{port}" in (tmp_path / "ray-head.log").read_text().lower()
    finally:
        taken.close()
        if node is not None:
            local_ray.stop_node(node.pgid)


def test_a_failure_that_is_not_a_taken_port_is_not_retried(tmp_path, monkeypatch):
    """A bad argument fails at once, with the log named, instead of three times over."""
    calls = []
    real_start = local_ray._start

    def counting_start(args, log_path):
        calls.append(args)
        return real_start([*args, "--num-cpus=-1"], log_path)

    monkeypatch.setattr(local_ray, "_start", counting_start)
    try:
        local_ray.start_head(num_cpus=1, log_dir=tmp_path)
    except local_ray.PortTaken:
        raise AssertionError("a negative CPU count was read as a taken port")
    except RuntimeError as exc:
        assert "ray-head.log" in str(exc)
    else:
        raise AssertionError("ray start accepted --num-cpus=-1")
    assert len(calls) == 1
