"""The FSDP2 trainer on the CPU (gloo), on token shards curated from the bundled corpus."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from tests.conftest import ROOT, TORCH_THREADS
from tokenizer.shards import TokenShard
from trainer.model import Attention, ModelConfig, Transformer, lm_loss

TINY = [
    "model.d_model=64", "model.n_layers=2", "model.n_heads=4", "model.seq_len=64",
    "optim.global_batch=16", "optim.micro_batch=4", "optim.lr=3e-3", "optim.warmup_steps=5",
    "parallel.mixed_precision=fp32", "log.val_every=1000", "checkpoint.every=0",
]


def train_cli(data, out, *overrides, nproc: int = 1):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] if nproc > 1 else [sys.executable]
    cmd = [*launcher, "-m", "trainer", "--data", str(data), "--out", str(out), "--no-progress", *TINY, *overrides]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(max(1, TORCH_THREADS // nproc))}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def tokens(mixed_run):
    cfg, _, _ = mixed_run
    return cfg.run_dir / "tokens"


def unigram_entropy(tokens_dir) -> float:
    manifest = json.loads((tokens_dir / "manifest.json").read_text())
    counts = np.zeros(manifest["tokenizer"]["vocab_size"], dtype=np.int64)
    for entry in manifest["shards"]:
        counts += np.bincount(TokenShard(tokens_dir / entry["file"]).tokens, minlength=len(counts))
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


@pytest.mark.slow
def test_tiny_model_learns_below_the_unigram_entropy(tokens, tmp_path):
    metrics = train_cli(tokens, tmp_path / "run", "optim.steps=200", "optim.lr=1e-2", "log.val_every=200")
    entropy = unigram_entropy(tokens)  # what a model that ignores context can reach at best
    final = np.mean([m["loss"] for m in metrics[-10:]])
    assert metrics[0]["loss"] > entropy  # starts near log(vocab)
    assert final < entropy - 0.4, (final, entropy)
    assert metrics[-1]["val_loss"] < entropy
    # (the data loader's share of step time is measured by benchmarks/data_loader.py, not asserted here)
    assert all(m["z_loss"] > 0 and m["grad_norm"] > 0 for m in metrics)
    lrs = [m["lr"] for m in metrics]
    assert lrs[4] == pytest.approx(1e-2) and lrs[-1] < 0.2 * 1e-2  # warmup, then cosine to the floor


@pytest.mark.slow
def test_two_process_fsdp_matches_one_process(tokens, tmp_path):
    # one process materialises the whole logits; two make them 100 positions at a time inside
    # FSDP2's forward (trainer.chunked_loss): the same losses either way
    one = train_cli(tokens, tmp_path / "one", "optim.steps=8", "model.loss_chunk=0")
    two = train_cli(tokens, tmp_path / "two", "optim.steps=8", "model.loss_chunk=100", nproc=2)
    for a, b in zip(one, two):
        assert b["loss"] == pytest.approx(a["loss"], rel=2e-4), (a["step"], a["loss"], b["loss"])


@pytest.fixture(scope="module")
def straight10(tokens, tmp_path_factory):
    """Ten steps never interrupted: what the stopped, killed and resumed runs must reproduce."""
    return train_cli(tokens, tmp_path_factory.mktemp("straight") / "run", "optim.steps=10")


@pytest.mark.slow
def test_stopped_and_resumed_run_matches_an_unstopped_one(tokens, tmp_path, straight10):
    straight = straight10
    train_cli(tokens, tmp_path / "resumed", "optim.steps=10", "stop_after=5")
    resumed = train_cli(tokens, tmp_path / "resumed", "optim.steps=10")
    assert [m["step"] for m in resumed] == list(range(1, 11))
    for a, b in zip(straight, resumed):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-6), a["step"]
    # and on another number of processes: the token stream continues where it stopped
    train_cli(tokens, tmp_path / "rescaled", "optim.steps=10", "stop_after=5", nproc=2)
    rescaled = train_cli(tokens, tmp_path / "rescaled", "optim.steps=10")
    for a, b in zip(straight[5:], rescaled[5:]):
        assert b["loss"] == pytest.approx(a["loss"], rel=2e-4), a["step"]


@pytest.mark.slow
def test_training_killed_between_checkpoints_resumes_to_the_same_loss_trajectory(tokens, tmp_path, straight10):
    """SIGKILL of ``python -m trainer`` two steps past its checkpoint at step 4 (those two steps are
    lost and redone), then the same command again: the loss of every step equals an unkilled run's
    (which checkpointed only at its end: checkpoints do not change the computation)."""
    args = ("optim.steps=10", "checkpoint.every=4")
    straight = straight10
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "trainer", "--data", str(tokens), "--out", str(out), "--no-progress", *TINY, *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(TORCH_THREADS)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 300
    while proc.poll() is None and time.time() < deadline:
        if metrics.exists() and '"step": 6,' in metrics.read_text():
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    assert proc.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    checkpoints = sorted(p.parent.name for p in (out / "checkpoints").glob("step-*/extra.json"))
    logged = [json.loads(line)["step"] for line in metrics.read_text().splitlines() if line.strip()]
    assert checkpoints[-1] == "step-00000004" and max(logged) > 4, (checkpoints, logged)  # killed between checkpoints
    resumed = train_cli(tokens, out, *args)
    assert [m["step"] for m in resumed] == list(range(1, 11))  # steps 5-6 logged once, by the resumed run
    for a, b in zip(straight, resumed):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-6), a["step"]


def test_soft_capped_logits_stay_within_the_cap():
    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=300, seq_len=16, d_model=32, n_layers=1, n_heads=2, logit_softcap=5.0))
    with torch.no_grad():
        model.output.head.weight.mul_(1000)
    logits = model(torch.randint(0, 300, (2, 16)))
    assert logits.abs().max() <= 5.0 and logits.abs().max() > 4.9


def test_qk_norm_makes_attention_blind_to_the_scale_of_queries_and_keys():
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=100, seq_len=8, d_model=32, n_layers=1, n_heads=2, qk_norm=True)
    attn = Attention(cfg)
    x = torch.randn(2, 8, 32)
    before = attn(x, None)
    with torch.no_grad():
        attn.qkv.weight[: 2 * cfg.d_model].mul_(100)  # queries and keys 100x larger
    assert torch.allclose(attn(x, None), before, atol=1e-5)
    plain = Attention(ModelConfig(vocab_size=100, seq_len=8, d_model=32, n_layers=1, n_heads=2, qk_norm=False))
    plain.load_state_dict({k: v for k, v in attn.state_dict().items() if "norm" not in k}, strict=False)
    assert not torch.allclose(plain(x, None), before, atol=1e-3)


def test_z_loss_is_reported_and_lowers_log_z():
    torch.manual_seed(0)
    targets = torch.randint(0, 50, (4, 16))
    start = torch.randn(4, 16, 50) + 5.0  # every logit shifted up: log Z about 9, cross-entropy unaffected

    def train(coefficient: float) -> tuple[float, float]:
        logits = start.clone().requires_grad_(True)
        opt = torch.optim.Adam([logits], lr=0.05)
        for _ in range(200):
            loss, z, n = lm_loss(logits, targets, coefficient, 0.0)
            opt.zero_grad()
            (loss / n).backward()
            opt.step()
        ce, _, n = lm_loss(logits, targets, 0.0, 0.0)
        return math.sqrt(z.item() / n.item()), ce.item() / n.item()

    log_z_plain, ce_plain = train(0.0)
    log_z_reg, ce_reg = train(0.1)
    assert log_z_plain > 8.5 and log_z_reg < log_z_plain - 2  # z-loss pulls log Z towards 0
    assert ce_reg < 1.0  # while it still fits the targets (from about 4 nats)


@pytest.fixture(scope="module")
def fully_sharded(tokens, tmp_path_factory):
    """The reference of every other sharding strategy: full sharding over two processes, run once."""
    return train_cli(tokens, tmp_path_factory.mktemp("full") / "run", "optim.steps=4", nproc=2)


@pytest.mark.slow
@pytest.mark.parametrize("sharding", ["grad_op", "replicate", "hybrid"])
def test_every_sharding_strategy_trains_the_same_model(tokens, tmp_path, sharding, fully_sharded):
    other = train_cli(tokens, tmp_path / sharding, "optim.steps=4", f"parallel.sharding={sharding}", "parallel.hybrid_shard_size=2", nproc=2)
    assert len(other) == len(fully_sharded) == 4
    for a, b in zip(fully_sharded, other):
        assert b["loss"] == pytest.approx(a["loss"], rel=2e-4)


@pytest.mark.parametrize(
    "variant",
    [
        {"norm": "layernorm", "positions": "learned", "mlp": "gelu", "qk_norm": False, "logit_softcap": None, "tie_embeddings": True},
        {"dropout": 0.1, "depth_scaled_init": False},
    ],
)
def test_recipe_switches_build_and_train(variant):
    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=200, seq_len=16, d_model=32, n_layers=2, n_heads=2, **variant))
    x = torch.randint(0, 200, (2, 17))
    loss, _, n = lm_loss(model(x[:, :-1]), x[:, 1:], 1e-4, 0.1)
    (loss / n).backward()
    assert all(p.grad is not None for p in model.parameters())
    if variant.get("tie_embeddings"):
        assert model.output.head.weight is model.embed.weight


def test_swiglu_hidden_is_eight_thirds_rounded_to_64():
    assert ModelConfig(d_model=768).mlp_hidden == 2048
    assert ModelConfig(d_model=1024, n_heads=16).mlp_hidden == 2752


def test_schedule_warms_up_then_decays_and_restarts():
    from trainer.config import OptimConfig
    from trainer.schedule import lr_lambda

    f = lr_lambda(OptimConfig(steps=110, warmup_steps=10, min_lr_ratio=0.1))
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.55) and f(109) == pytest.approx(0.1, abs=1e-3)
    sgdr = lr_lambda(OptimConfig(steps=110, warmup_steps=10, restart_every=50))
    assert sgdr(59) < 0.2 and sgdr(60) == pytest.approx(1.0)


def test_mixture_sampler_holds_ratios_and_does_not_depend_on_world_size(tokens):
    from trainer.data import MixtureSampler, load_streams

    streams, _, _ = load_streams(tokens / "manifest.json", 0.05)
    sampler = MixtureSampler(streams, 32, {"finance": 0.25, "general": 0.75})
    rows = [sampler.batch(step, 8, 0, 1) for step in range(25)]
    assert sampler.state.counts == {"finance": 50, "general": 150}
    assert sampler.state.positions["finance"] == 50 * 32  # position kept in tokens
    two = [MixtureSampler(streams, 32, {"finance": 0.25, "general": 0.75}) for _ in range(2)]
    for step in range(25):
        halves = [s.batch(step, 8, r, 2) for r, s in enumerate(two)]
        merged = torch.stack([halves[i % 2][i // 2] for i in range(8)])
        assert torch.equal(merged, rows[step])
    scheduled = MixtureSampler(streams, 32, schedule=[(0, {"finance": 1.0, "general": 0.0}), (10, {"finance": 0.0, "general": 1.0})])
    for step in range(20):
        scheduled.batch(step, 4, 0, 1)
    assert scheduled.ratios_at(5) == pytest.approx({"finance": 0.5, "general": 0.5})
    # finance was due 4 x (1 - step/10) sequences at steps 0..9 (22 in all) and none after
    assert abs(scheduled.state.counts["finance"] - 22) <= 1 and scheduled.state.counts["general"] == 80 - scheduled.state.counts["finance"]


@pytest.mark.slow
def test_activation_checkpointing_changes_memory_not_results(tokens, tmp_path):
    plain = train_cli(tokens, tmp_path / "plain", "optim.steps=3")
    checkpointed = train_cli(tokens, tmp_path / "ac", "optim.steps=3", "parallel.activation_checkpointing=true")
    for a, b in zip(plain, checkpointed):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-6)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_loss_equals_torch_cross_entropy_plus_z_loss(smoothing):
    torch.manual_seed(0)
    logits = torch.randn(3, 7, 40) * 3
    targets = torch.randint(0, 40, (3, 7))
    targets[0, 0] = -100  # ignored
    loss, z, n = lm_loss(logits, targets, 1e-3, smoothing)
    reference = torch.nn.functional.cross_entropy(logits.view(-1, 40), targets.view(-1), reduction="sum", label_smoothing=smoothing)
    log_z = torch.logsumexp(logits.view(-1, 40), dim=-1)[targets.view(-1) != -100]
    assert n == 20
    assert torch.allclose(z, (log_z**2).sum())
    assert torch.allclose(loss, reference + 1e-3 * z, rtol=1e-5)


def test_step_batches_travel_with_the_data_state_of_their_own_step(tmp_path):
    """Batches are built ahead in a worker process, in step order, nothing past the last step;
    each comes with the state after it, not after the prefetched one."""
    from trainer.data import StepBatches

    log = tmp_path / "drawn"

    def make(step):
        with log.open("a") as f:  # the worker is another process: it reports through a file
            f.write(f"{step}\n")
        return torch.full((2,), step), {"sequences": 10 * (step + 1)}

    batches = StepBatches(make, 3, 6)
    try:
        for step in range(3, 6):
            batch, state, _ = batches.get(step)
            assert batch.tolist() == [step, step] and state == {"sequences": 10 * (step + 1)}
        with pytest.raises(ValueError, match="step order"):
            batches.get(3)
    finally:
        batches.close()
    # the first step is built by the training process, and by the worker only to advance its own
    # sampler past it; every later step once, by the worker; nothing past the last step
    assert sorted(log.read_text().split()) == ["3", "3", "4", "5"]


@pytest.mark.slow
def test_prefetching_batches_changes_nothing_but_the_wait(tokens, tmp_path):
    ahead = train_cli(tokens, tmp_path / "ahead", "optim.steps=6")
    inline = train_cli(tokens, tmp_path / "inline", "optim.steps=6", "data.prefetch=false")
    assert [m["loss"] for m in ahead] == [m["loss"] for m in inline]
