"""The output head and the loss made a chunk of positions at a time (``trainer.chunked_loss``):
the same loss and gradients as the whole logits, without ever holding them."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from tests.conftest import run_in_triton_interpreter
from trainer.model import ModelConfig, Transformer, lm_loss

VOCAB = 300


def small_model(vocab: int = VOCAB, **overrides) -> Transformer:
    torch.manual_seed(0)
    return Transformer(ModelConfig(vocab_size=vocab, seq_len=32, d_model=64, n_layers=2, n_heads=4, **overrides))


def batch(ignored: bool = True):
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, VOCAB, (3, 33), generator=g)
    targets = tokens[:, 1:].clone()
    if ignored:  # positions without a target (masked-LM, prefix-LM) must not count
        targets[0, :5] = -100
        targets[2, 20:] = -100
    return tokens[:, :-1], targets


@pytest.mark.parametrize("softcap", [30.0, None])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("chunk", [7, 40, 1000])  # not dividing the 96 positions, dividing, one chunk
def test_chunked_loss_equals_the_loss_of_the_whole_logits(softcap, smoothing, chunk):
    model = small_model(logit_softcap=softcap, loss_chunk=chunk)
    inputs, targets = batch()
    whole = lm_loss(model(inputs), targets, 1e-2, smoothing)
    whole[0].backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    chunked = model(inputs, None, targets, 1e-2, smoothing)
    chunked[0].backward()
    assert chunked[2].item() == whole[2].item() == 96 - 5 - 12
    torch.testing.assert_close(chunked[0], whole[0], rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(chunked[1], whole[1], rtol=1e-5, atol=1e-4)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, expected[name], rtol=1e-4, atol=1e-5, msg=name)  # fp32 rounding: gradients reach 5


def test_evaluation_without_gradients_gives_the_same_loss():
    model = small_model(loss_chunk=10)
    inputs, targets = batch()
    with torch.no_grad():
        chunked = model(inputs, None, targets, 0.0, 0.0)
        whole = lm_loss(model(inputs), targets, 0.0, 0.0)
    torch.testing.assert_close(chunked[0], whole[0], rtol=1e-5, atol=1e-4)
    assert not chunked[0].requires_grad


class LargestTensor(TorchDispatchMode):
    """The most elements any operation produced while it was active."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize("chunk", [16, 0])
def test_the_whole_logits_never_exist_when_chunked(chunk):
    vocab = 5000  # the logits are then the model's largest activations by far, as in a real LM
    model = small_model(vocab, loss_chunk=chunk)
    inputs, targets = batch(ignored=False)
    with LargestTensor() as seen:
        loss, _, _ = model(inputs, None, targets, 1e-4, 0.0)
        loss.backward()
    whole = inputs.numel() * vocab
    if chunk:  # forward and backward: nothing larger than one chunk's logits or the head's weight (vocab × 64)
        assert seen.largest <= max(chunk, 64) * vocab < whole
    else:  # the unchunked path does hold them: the check above can fail
        assert seen.largest >= whole


TRITON_CHECK = """
import torch
from trainer.chunked_loss import chunk_loss_and_grad
from trainer.triton_loss import chunk_loss_and_grad_triton
torch.manual_seed(0)
for softcap in (30.0, None):
    for smoothing in (0.0, 0.1):
        for dtype in (torch.float32, torch.bfloat16):
            logits = (torch.randn(6, 1000) * 8).to(dtype)
            targets = torch.randint(0, 1000, (6,))
            targets[2] = -100
            a = chunk_loss_and_grad(logits.clone(), targets, softcap, 1e-2, smoothing, -100, True)
            b = chunk_loss_and_grad_triton(logits.clone(), targets, softcap, 1e-2, smoothing, -100, True, block=256, num_warps=4)
            torch.testing.assert_close(b[0], a[0], rtol=1e-5, atol=1e-4)
            torch.testing.assert_close(b[1], a[1], rtol=1e-5, atol=1e-4)
            tol = 1e-5 if dtype == torch.float32 else 8e-3
            torch.testing.assert_close(b[2].float(), a[2].float(), rtol=0, atol=tol)
            assert b[2].dtype == dtype and not b[2][2].any()  # an ignored position has no gradient
loss, z, grad = chunk_loss_and_grad_triton(logits.clone(), targets, 30.0, 1e-2, 0.0, -100, False, block=256, num_warps=4)
assert grad is None
print("ok")
"""


def test_the_triton_kernel_computes_what_the_torch_chunk_does():
    """The GPU kernel run by Triton's interpreter on the CPU: the same loss, z and gradient."""
    run_in_triton_interpreter(TRITON_CHECK)
