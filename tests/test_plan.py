import json

import pytest

from trainer.plan import chinchilla, gpu_hours_to_flops, main, memory_per_gpu


def test_chinchilla_both_ways():
    b = chinchilla(params=1e9)
    assert b.tokens == 20e9 and b.flops == pytest.approx(1.2e20)
    back = chinchilla(flops=b.flops)
    assert back.params == pytest.approx(1e9) and back.tokens == pytest.approx(20e9)
    with pytest.raises(ValueError):
        chinchilla()


def test_memory_per_gpu_follows_zero_accounting():
    m = memory_per_gpu(1e9, 8)
    assert m["replicate (DDP)"] == 16e9
    assert m["ZeRO-1"] == pytest.approx(4e9 + 12e9 / 8)
    assert m["ZeRO-2"] == pytest.approx(2e9 + 14e9 / 8)
    assert m["full shard (ZeRO-3)"] == pytest.approx(2e9)
    assert gpu_hours_to_flops(1, "h100", 0.5) == pytest.approx(3600 * 989e12 * 0.5)


def test_plan_uses_a_runs_measured_retention(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    stats = {"retention": {"tokens_in_shards": 1010, "tokens_kept": 1000, "tokens_vs_raw": 0.01, "shard_tokens_vs_extracted": 0.02}}
    (run / "stats.json").write_text(json.dumps(stats))
    assert main(["--params", "1e9", "--run", str(run), "--gpus", "8", "64"]) == 0
    out = capsys.readouterr().out
    assert "20.00B tokens" in out
    assert "extracted tokens to crawl: 1.00T" in out  # 20B / 0.02
    assert "raw-record tokens to crawl: 1.98T" in out  # 20B / (1010 / 100000)
    assert "14.9 GiB" in out  # 16 GB replicate
    assert main(["--params", "1e9", "--run", str(tmp_path / "missing")]) == 2
