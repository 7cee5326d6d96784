"""Bits per byte on the reference text: against a hand computation, and from a training run."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.conftest import ROOT
from tokenizer.train import EOS_ID, SentencePieceSettings, train_sentencepiece
from trainer.eval import EvalDomain, default_eval_text, domain_bpb, encode_eval_text, nll_sum, windows
from trainer.model import ModelConfig, Transformer

SEQ = 8


def small_eval_text(folder, docs: int = 2) -> list[str]:
    """The first documents of each shipped evaluation file, so a CPU training run scores a few thousand tokens, not 100k."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for path in default_eval_text():
        lines = open(path, encoding="utf-8").read().splitlines()[:docs]
        paths.append(str(folder / os.path.basename(path)))
        open(paths[-1], "w", encoding="utf-8").write("\n".join(lines) + "\n")
    return paths


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=40, seq_len=SEQ, d_model=32, n_layers=2, n_heads=4))
    return model.eval()


def _documents(lengths, vocab=40, seed=1):
    rng = np.random.default_rng(seed)
    return [np.array([EOS_ID, *rng.integers(3, vocab, n)], dtype=np.int64) for n in lengths]


def _hand_nll(model, doc: np.ndarray, seq_len: int, stride: int) -> float:
    """Token by token: the model's logits at the end of the context the window rule gives the target."""
    nll = 0.0
    for j in range(1, len(doc)):
        k = max(0, math.ceil((j - seq_len) / stride))  # the first window whose inputs reach position j - 1
        context = torch.from_numpy(doc[None, k * stride : j])
        with torch.no_grad():
            logits = model(context)[0, -1].double()
        nll -= torch.log_softmax(logits, dim=-1)[doc[j]].item()
    return nll


@pytest.mark.parametrize("stride", [SEQ, 3, 1])
def test_bits_per_byte_equals_a_hand_computation(tiny, stride):
    docs = _documents([1, 4, SEQ - 1, SEQ, SEQ + 1, 3 * SEQ + 2, 20])
    domain = EvalDomain(docs, n_bytes=1234)
    result = domain_bpb(tiny, {"finance": domain}, SEQ, batch_size=3, device=torch.device("cpu"), stride=stride)["finance"]
    hand = sum(_hand_nll(tiny, d, SEQ, stride) for d in docs)
    assert result["tokens"] == sum(len(d) - 1 for d in docs)
    assert result["nll_nats"] == pytest.approx(hand, rel=1e-5)
    assert result["bpb"] == pytest.approx(hand / (math.log(2) * 1234), rel=1e-5)


def test_processes_split_the_windows_and_the_sum_is_the_same(tiny, monkeypatch):
    monkeypatch.setattr("trainer.eval.dist.all_reduce", lambda tensor: None)  # each process's own share, summed below
    docs = _documents([30, 7, 12])
    rows = [w for d in docs for w in windows(d, SEQ, SEQ)]
    whole = nll_sum(tiny, rows, SEQ, 2, torch.device("cpu"))
    parts = [nll_sum(tiny, rows, SEQ, 2, torch.device("cpu"), rank, 3) for rank in range(3)]
    assert sum(p[1] for p in parts) == whole[1] and sum(p[0] for p in parts) == pytest.approx(whole[0], rel=1e-6)


@pytest.mark.parametrize("length,stride", [(1, 8), (8, 8), (9, 8), (50, 8), (50, 5), (50, 1)])
def test_every_token_is_scored_once(length, stride):
    doc = np.arange(length + 1)
    scored = [t for _, y in windows(doc, SEQ, stride) for t in y if t != -100]
    assert scored == list(range(1, length + 1))
    assert all(len(x) == len(y) <= SEQ for x, y in windows(doc, SEQ, stride))


def test_the_reference_text_is_encoded_whole_with_eos_before_each_document(tmp_path):
    from tokenizer.model import Tokenizer

    paths = default_eval_text()
    texts = {p: [json.loads(line)["text"] for line in open(p, encoding="utf-8")] for p in paths}
    model = train_sentencepiece([t for ts in texts.values() for t in ts[:3]], SentencePieceSettings(vocab_size=400))
    path = tmp_path / "spm.model"
    path.write_bytes(model)
    tokenizer = Tokenizer(path)
    domains = encode_eval_text(paths, tokenizer)
    assert set(domains) == {"finance", "general"}
    for p, domain in zip(paths, (domains["finance"], domains["general"])):
        assert domain.n_bytes == sum(len(t.encode("utf-8")) for t in texts[p]) > 100_000
        assert all(d[0] == tokenizer.eos_id for d in domain.documents)
        assert [tokenizer.decode(d[1:].tolist()) for d in domain.documents] == texts[p]


@pytest.mark.slow
def test_training_logs_bits_per_byte_and_the_command_agrees(mixed_run, tmp_path):
    from tests.test_trainer import train_cli

    tokens = mixed_run[0].run_dir / "tokens"
    eval_text = small_eval_text(tmp_path / "eval")
    metrics = train_cli(tokens, tmp_path / "run", "optim.steps=4", "log.val_every=2", f"log.eval_text={json.dumps(eval_text)}")
    assert [sorted(k for k in m if k.startswith("val_bpb/")) for m in metrics] == [[], ["val_bpb/finance", "val_bpb/general"]] * 2
    assert all(0 < m[k] < 16 for m in metrics for k in m if k.startswith("val_bpb/"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "trainer.eval", "--run", str(tmp_path / "run"), "--device", "cpu"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    written = json.loads((tmp_path / "run" / "eval_bpb.json").read_text())
    assert written["step"] == 4 and written["stride"] == written["seq_len"] and written["eval_text"] == eval_text
    for domain in ("finance", "general"):  # the same checkpoint, scored the same way
        assert written["bpb"][domain] == pytest.approx(metrics[-1][f"val_bpb/{domain}"], rel=1e-4)


def test_scoring_makes_no_gradient_beside_the_loss(tiny, monkeypatch):
    import trainer.chunked_loss as chunked

    asked, real = [], chunked.chunk_loss_and_grad
    monkeypatch.setattr(chunked, "chunk_loss_and_grad", lambda *a: asked.append(a[-1]) or real(*a))
    x = torch.randint(3, 40, (2, SEQ))
    with torch.no_grad():
        tiny(x, None, x)
    tiny(x, None, x)
    assert asked == [False, True]
