"""Issue 9: pretraining objectives, distillation, Noam schedule, init choices, local attention, memory."""

import json
import math

import numpy as np
import pytest
import torch

from tests.test_trainer import tokens, train_cli  # noqa: F401 (the module's shard fixture)
from tokenizer.special import special_tokens
from trainer.model import ModelConfig, Transformer
from trainer.objectives import IGNORE, ObjectiveConfig, make_objective, random_spans

VOCAB = 500
SPECIAL = special_tokens(VOCAB)


def rows(n=8, seq_len=128, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).integers(3, VOCAB, size=(n, seq_len + 1)))


def objective(kind, seq_len=128, **kw):
    return make_objective(ObjectiveConfig(kind=kind, **kw), seq_len, SPECIAL, VOCAB, seed=0)


# --- masked LM ------------------------------------------------------------------------------


def test_mlm_masks_the_stated_fraction_with_the_80_10_10_rule():
    mlm = objective("mlm", seq_len=512)
    data = rows(64, 512)
    batch = mlm.batch(data, list(range(64)))
    picked = batch.targets != IGNORE
    assert picked.sum(1).tolist() == [round(0.15 * 512)] * 64  # exactly 15% of every sequence
    assert torch.equal(batch.targets[picked], data[:, :-1][picked])  # the originals are the targets
    assert torch.equal(batch.inputs[~picked], data[:, :-1][~picked])  # the rest is untouched
    n = picked.sum().item()
    masked = (batch.inputs[picked] == SPECIAL["mask_id"]).sum().item() / n
    kept = (batch.inputs[picked] == data[:, :-1][picked]).sum().item() / n
    randomised = 1 - masked - kept
    assert masked == pytest.approx(0.8, abs=0.02) and kept == pytest.approx(0.1, abs=0.015) and randomised == pytest.approx(0.1, abs=0.015)
    assert batch.inputs.max() < VOCAB or batch.inputs.max() == SPECIAL["mask_id"]  # random tokens are text tokens
    # the masks depend on (seed, global sequence index) only: any split over processes agrees
    again = mlm.batch(data[1::2], list(range(1, 64, 2)))
    assert torch.equal(again.inputs, batch.inputs[1::2]) and torch.equal(again.targets, batch.targets[1::2])


def test_mlm_attends_both_ways_and_clm_only_backwards():
    torch.manual_seed(0)
    x = torch.randint(0, VOCAB, (1, 32))
    later = x.clone()
    later[0, 20] = (later[0, 20] + 1) % VOCAB  # change a later token
    for bidirectional in (True, False):
        model = Transformer(ModelConfig(vocab_size=VOCAB, seq_len=32, d_model=32, n_layers=2, n_heads=2, bidirectional=bidirectional))
        moved = (model(x)[0, 5] - model(later)[0, 5]).abs().max().item()  # output at position 5
        assert (moved > 1e-4) == bidirectional, (bidirectional, moved)


# --- span corruption ------------------------------------------------------------------------


def test_span_corruption_reconstructs_the_spans_from_the_sentinels():
    span = objective("span", seq_len=256)
    data = rows(16, 256)
    batch = span.batch(data, list(range(16)))
    first, p = SPECIAL["first_sentinel_id"], span.prefix_length
    assert span.noise == round(span.raw * 0.15) and span.spans == round(span.noise / 3)  # mean span 3, 15% noise
    assert batch.prefix.tolist() == [p] * 16
    for r in range(16):
        z = torch.cat([batch.inputs[r], batch.targets[r, -1:]]).tolist()
        inputs, targets = z[:p], z[p : p + span.targets_per_sequence]
        sentinels = [t for t in inputs if t >= first]
        assert sentinels == list(range(first, first + span.spans))  # one sentinel per span, in order
        # each sentinel in the target is followed by the span it replaced
        pieces, current = {}, None
        for t in targets:
            if t >= first:
                current = t
                pieces[current] = []
            else:
                pieces[current].append(t)
        assert sum(len(v) for v in pieces.values()) == span.noise
        assert all(pieces[s] for s in sentinels)
        rebuilt = [tok for t in inputs for tok in (pieces[t] if t >= first else [t])]
        assert rebuilt == data[r, : span.raw].tolist()
        # the loss is on the targets only: from the last input position to the last span token
        labels = batch.targets[r]
        assert (labels[: p - 1] == IGNORE).all() and (labels[p - 1 + span.targets_per_sequence :] == IGNORE).all()
        assert labels[p - 1 : p - 1 + span.targets_per_sequence].tolist() == targets
    lengths = [b - a for seq in range(200) for a, b in random_spans(span.raw, span.noise, span.spans, np.random.default_rng(seq))]
    assert np.mean(lengths) == pytest.approx(span.noise / span.spans)  # about 3


def test_prefix_lm_sees_the_prefix_both_ways_and_the_rest_causally():
    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=VOCAB, seq_len=32, d_model=32, n_layers=2, n_heads=2))
    x = torch.randint(0, VOCAB, (1, 32))
    prefix = torch.tensor([10])

    def moved(at, changed):
        y = x.clone()
        y[0, changed] = (y[0, changed] + 1) % VOCAB
        return (model(x, prefix)[0, at] - model(y, prefix)[0, at]).abs().max().item()

    assert moved(2, 8) > 1e-4  # inside the prefix: later prefix tokens are seen
    assert moved(2, 12) < 1e-6 and moved(15, 20) < 1e-6  # nothing after the prefix is seen early
    assert moved(15, 8) > 1e-4


# --- local attention ------------------------------------------------------------------------


@pytest.mark.parametrize("bidirectional", [False, True])
def test_local_layers_never_look_past_their_window_and_global_layers_do(bidirectional):
    torch.manual_seed(0)
    window, t = 4, 32
    x = torch.randn(1, t, 32, requires_grad=True)
    for pattern, sees_far in (("L", False), ("G", True)):
        cfg = ModelConfig(vocab_size=VOCAB, seq_len=t, d_model=32, n_layers=1, n_heads=2, window=window, attention_pattern=pattern,
                          bidirectional=bidirectional, attention_backend="sdpa")
        model = Transformer(cfg)
        block = model.layers[0]
        masks = model.attention_masks(t, x.device)
        y = block(x, (model.rope_cos, model.rope_sin), masks[cfg.layer_is_local(0)])
        (grad,) = torch.autograd.grad(y[0, 20].sum(), x)
        reach = grad[0].abs().sum(-1) > 0  # which inputs position 20 depends on
        seen = set(torch.nonzero(reach).flatten().tolist())
        inside = set(range(20 - window + 1, 20 + (window if bidirectional else 1)))
        if sees_far:
            assert seen == (set(range(t)) if bidirectional else set(range(21)))
        else:
            assert seen == inside, sorted(seen)


def test_alternating_pattern_and_flex_block_mask_agree_with_the_boolean_mask():
    from torch.nn.attention.flex_attention import flex_attention

    cfg = ModelConfig(vocab_size=VOCAB, seq_len=64, d_model=32, n_layers=4, n_heads=2, window=8, attention_pattern="LG")
    assert [cfg.layer_is_local(i) for i in range(4)] == [True, False, True, False]
    model = Transformer(cfg)
    prefix = torch.tensor([5, 20])
    dense = model.attention_masks(64, torch.device("cpu"), prefix)
    cfg.attention_backend = "flex"
    blocks = model.attention_masks(64, torch.device("cpu"), prefix)
    q, k, v = (torch.randn(2, 2, 64, 16) for _ in range(3))
    for local in (True, False):
        expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=dense[local])
        assert torch.allclose(flex_attention(q, k, v, block_mask=blocks[local]), expected, atol=1e-5)
    with pytest.raises(ValueError, match="model.window"):
        ModelConfig(attention_pattern="LG")


# --- init and schedule ----------------------------------------------------------------------


@pytest.mark.parametrize("init", ["normal", "xavier", "he"])
def test_init_choices_give_their_standard_deviations(init):
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=VOCAB, seq_len=16, d_model=256, n_layers=8, n_heads=4, init=init, mlp="gelu")
    model = Transformer(cfg)
    d, h = 256, 4 * 256
    expected = {
        "normal": {"qkv": 0.02, "up": 0.02, "out": 0.02 / 4},
        "xavier": {"qkv": math.sqrt(2 / (d + 3 * d)), "up": math.sqrt(2 / (d + h)), "out": math.sqrt(2 / (h + d)) / 4},
        "he": {"qkv": math.sqrt(2 / d), "up": math.sqrt(2 / d), "out": math.sqrt(2 / h) / 4},
    }[init]
    layer = model.layers[3]
    assert layer.attn.qkv.weight.std().item() == pytest.approx(expected["qkv"], rel=0.02)
    assert layer.mlp.up.weight.std().item() == pytest.approx(expected["up"], rel=0.02)
    assert layer.mlp.out.weight.std().item() == pytest.approx(expected["out"], rel=0.02)  # depth-scaled: / sqrt(2 * 8)
    assert model.embed.weight.std().item() == pytest.approx(0.02, rel=0.02)


def test_noam_schedule_peaks_at_warmup_then_falls_as_inverse_square_root():
    from trainer.config import OptimConfig
    from trainer.schedule import lr_lambda, noam_peak_lr

    f = lr_lambda(OptimConfig(schedule="noam", warmup_steps=100, steps=10000))
    values = [f(s) for s in range(10000)]
    assert int(np.argmax(values)) == 99 and values[99] == pytest.approx(1.0)
    assert values[49] == pytest.approx(0.5)  # linear rise
    for s in (399, 1599, 9999):  # ∝ step^-0.5 after the warmup
        assert values[s] == pytest.approx(math.sqrt(100 / (s + 1)))
    # the paper's lr = d^-0.5 * min(s^-0.5, s * w^-1.5), peak d^-0.5 * w^-0.5
    d, w = 512, 4000
    assert noam_peak_lr(d, w) * lr_lambda(OptimConfig(schedule="noam", warmup_steps=w))(w * 3 - 1) == pytest.approx(d**-0.5 * (3 * w) ** -0.5)
    with pytest.raises(ValueError, match="optim.schedule"):
        OptimConfig(schedule="linear")


# --- distillation loss ----------------------------------------------------------------------


def test_distillation_loss_is_kl_on_softened_logits_plus_cross_entropy():
    from trainer.distill import distill_loss

    torch.manual_seed(0)
    s, t = torch.randn(2, 5, 30), torch.randn(2, 5, 30) * 2
    y = torch.randint(0, 30, (2, 5))
    y[0, 0] = IGNORE
    loss, ce = distill_loss(s, t, y, alpha=0.7, temperature=2.0)
    keep = (y != IGNORE).flatten()
    ps, pt = (torch.softmax(a.view(-1, 30)[keep] / 2.0, -1) for a in (s, t))
    kl = (pt * (pt.log() - ps.log())).sum()
    ref_ce = torch.nn.functional.cross_entropy(s.view(-1, 30), y.view(-1), reduction="sum", ignore_index=IGNORE)
    assert torch.allclose(ce, ref_ce) and torch.allclose(loss, 0.7 * 4 * kl + 0.3 * ref_ce, rtol=1e-5)
    same, _ = distill_loss(s, s, y, alpha=1.0, temperature=3.0)
    assert same.abs().item() < 1e-4  # a student equal to its teacher has nothing to learn


# --- end to end on the bundled corpus's shards ----------------------------------------------

SMALL = ["model.vocab_size=1", "optim.micro_batch=8"]  # vocabulary: raised to the tokenizer's (plus the special ids)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["mlm", "span"])
def test_each_objective_learns_on_the_shards(tokens, tmp_path, kind):
    metrics = train_cli(tokens, tmp_path / kind, *SMALL, f"objective.kind={kind}", "optim.steps=40", "optim.lr=1e-2", "log.val_every=40")
    first, last = metrics[0]["loss"], np.mean([m["loss"] for m in metrics[-5:]])
    config = json.loads((tmp_path / kind / "config.json").read_text())
    manifest = json.loads((tokens / "manifest.json").read_text())
    assert config["model"]["vocab_size"] == manifest["tokenizer"]["special"]["vocab_size"]  # mask and sentinels embedded
    assert config["model"]["bidirectional"] == (kind == "mlm")
    assert first > math.log(manifest["tokenizer"]["vocab_size"]) - 0.5 and last < first - 1.0, (first, last)
    assert metrics[-1]["val_loss"] < first - 1.0


@pytest.mark.slow
def test_masked_lm_resumes_exactly_on_another_number_of_processes(tokens, tmp_path):
    straight = train_cli(tokens, tmp_path / "straight", *SMALL, "objective.kind=mlm", "optim.steps=4")
    train_cli(tokens, tmp_path / "resumed", *SMALL, "objective.kind=mlm", "optim.steps=4", "stop_after=2")
    resumed = train_cli(tokens, tmp_path / "resumed", *SMALL, "objective.kind=mlm", "optim.steps=4", nproc=2)
    assert [m["step"] for m in resumed] == [1, 2, 3, 4]
    for a, b in zip(straight[2:], resumed[2:]):
        assert b["loss"] == pytest.approx(a["loss"], rel=2e-4), a["step"]


@pytest.mark.slow
def test_distilled_student_beats_the_student_trained_alone(tokens, tmp_path):
    common = [*SMALL, "optim.micro_batch=16", "optim.lr=1e-2", "log.val_batches=8"]
    train_cli(tokens, tmp_path / "teacher", *common, "model.d_model=96", "optim.steps=150", "checkpoint.every=150")
    student = [*common, "model.d_model=32", "model.n_layers=1", "model.n_heads=2", "optim.steps=40", "log.val_every=40"]
    alone = train_cli(tokens, tmp_path / "alone", *student)
    distilled = train_cli(tokens, tmp_path / "distilled", *student, f"distill.teacher={tmp_path / 'teacher'}", "distill.alpha=0.9", "distill.temperature=1.0")
    # held-out cross-entropy at equal steps (the training loss of the distilled run is the mixed loss);
    # same init, same batches: the teacher's targets are the only difference (measured: 0.05–0.3 nats
    # better, depending on the shards of the bundled run)
    assert distilled[-1]["val_loss"] < alone[-1]["val_loss"] - 0.02, (distilled[-1]["val_loss"], alone[-1]["val_loss"])


@pytest.mark.slow
def test_planner_memory_is_within_20_percent_of_the_measured_state_per_sharding_choice(tokens, tmp_path):
    from trainer.plan import memory_per_gpu

    planner_row = {"replicate": "replicate (DDP)", "grad_op": "ZeRO-2", "full": "full shard (ZeRO-3)"}
    measured = {}
    for sharding, row in planner_row.items():
        out = tmp_path / sharding
        metrics = train_cli(tokens, out, *SMALL, "optim.global_batch=8", "optim.micro_batch=4", "optim.steps=2", "parallel.mixed_precision=bf16",
                            f"parallel.sharding={sharding}", nproc=2)
        params = Transformer(ModelConfig(**json.loads((out / "config.json").read_text())["model"])).num_params(exclude_embeddings=False)
        measured[sharding] = metrics[-1]["model_state_bytes"]  # step 2: Adam's moments exist
        estimate = memory_per_gpu(params, 2)[row]
        assert measured[sharding] == pytest.approx(estimate, rel=0.2), (sharding, measured[sharding], estimate, metrics[-1]["model_state_parts"])
    assert measured["full"] < measured["replicate"] / 1.9 and measured["grad_op"] < measured["replicate"] / 1.9


def test_cpu_offload_is_refused_on_the_cpu_with_the_field_named():
    from trainer.config import ParallelConfig
    from trainer.parallel import parallelize

    model = Transformer(ModelConfig(vocab_size=VOCAB, seq_len=16, d_model=32, n_layers=1, n_heads=2))
    with pytest.raises(ValueError, match="parallel.cpu_offload"):
        parallelize(model, ParallelConfig(cpu_offload=True), 2, "cpu")


def test_special_ids_lie_past_the_sentencepiece_vocabulary_and_text_never_encodes_to_them(tmp_path):
    from tokenizer.model import Tokenizer
    from tokenizer.train import SentencePieceSettings, train_sentencepiece

    texts = ["The court held that the contract was void.\nDosage: 5 mg twice daily.", "Bond yields rose 3% on Friday."] * 20
    path = tmp_path / "spm.model"
    path.write_bytes(train_sentencepiece(texts, SentencePieceSettings(vocab_size=300)))
    tok = Tokenizer(path)
    special = tok.special
    assert special["mask_id"] == tok.vocab_size and special["vocab_size"] == tok.vocab_size + 1 + special["sentinels"]
    text = "A page quoting <extra_id_0> and <mask> literally."
    ids = tok.encode(text)
    assert max(ids) < tok.vocab_size and tok.decode(ids) == text
    first = special["first_sentinel_id"]
    assert tok.decode(tok.encode("Bond ") + [first + 1] + tok.encode(" rose") + [special["mask_id"]]) == "Bond <extra_id_1> rose<mask>"
