"""The fused QK-norm + RoPE Triton op (the GPU path of ``trainer.model.Attention``) against the
torch ops it replaces, run by Triton's interpreter on the CPU: outputs and every gradient."""

from tests.conftest import run_in_triton_interpreter

CHECK = """
import torch
from trainer.model import ModelConfig, apply_rope, make_norm, rope_tables
from trainer.triton_qk_rope import qk_norm_rope

torch.manual_seed(0)
cfg = ModelConfig(d_model=48, n_heads=3)  # head_dim 16
for b, t in ((2, 5), (3, 7)):  # 30 and 63 (token, head) rows: a partial last program
    q_norm, k_norm = make_norm(cfg, 16), make_norm(cfg, 16)
    with torch.no_grad():
        q_norm.weight.uniform_(0.5, 1.5)
        k_norm.weight.uniform_(0.5, 1.5)
    cos, sin = rope_tables(12, 16, 10000.0)  # a longer table than the sequence, as in the model
    qkv = (torch.randn(b, t, 3 * 48) * 3).view(b, t, 3, 3, 16).requires_grad_()
    # upstream gradients with the strides SDPA's backward gives: (batch, heads, time, dim) memory
    upstream = [torch.randn(b, 3, t, 16).transpose(1, 2) for _ in range(3)]

    q, k, v = qkv.unbind(2)
    want = (apply_rope(q_norm(q), cos[:t], sin[:t]), apply_rope(k_norm(k), cos[:t], sin[:t]), v)
    want_grads = torch.autograd.grad(want, (qkv, q_norm.weight, k_norm.weight), upstream)

    got = qk_norm_rope(qkv, q_norm.weight, k_norm.weight, cos[:t], sin[:t], q_norm.eps)
    assert all(g.is_contiguous() and g.shape == (b, t, 3, 16) for g in got)
    got_grads = torch.autograd.grad(got, (qkv, q_norm.weight, k_norm.weight), upstream)
    for a, w in zip(got, want):
        torch.testing.assert_close(a, w, rtol=1e-5, atol=1e-5)
    for a, w in zip(got_grads, want_grads):
        torch.testing.assert_close(a, w, rtol=1e-4, atol=1e-4)
print("ok")
"""


def test_fused_qk_norm_rope_equals_the_torch_ops_forward_and_backward():
    run_in_triton_interpreter(CHECK)
