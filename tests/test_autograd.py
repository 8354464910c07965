"""The layers people put in real models, through both product modes (curvlab/_autograd.py).

Each layer sits in a small float64 model; the Hessian and GGN of both modes must equal a dense
reverse-over-reverse reference from ``torch.func`` (``jacrev(grad(f))``, under the math
attention backend, which has a double backward) and be symmetric.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call, grad, jacrev

import curvlab as cl

DT = torch.float64


class Tokens(nn.Module):
    """Token ids -> class logits through an embedding with a padding row."""

    def __init__(self, layer):
        super().__init__()
        self.emb = nn.Embedding(7, 4, padding_idx=0)
        self.layer = layer
        self.out = nn.Linear(4, 3)

    def forward(self, ids):
        return self.out(self.layer(self.emb(ids)).mean(1))


class Attention(nn.Module):
    """F.scaled_dot_product_attention on (B, heads, T, d): a fused kernel by default on CPU."""

    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(4, 12)

    def forward(self, x):
        B, T, _ = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, 2, 2).permute(2, 0, 3, 1, 4).unbind(0)
        return nn.functional.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, T, 4)


class MHA(nn.Module):
    def __init__(self):
        super().__init__()
        self.mha = nn.MultiheadAttention(4, 2, batch_first=True)

    def forward(self, x):
        return self.mha(x, x, x, need_weights=False)[0]


LAYERS = {
    "embedding_padding_idx": lambda: nn.Tanh(),
    "layernorm": lambda: nn.LayerNorm(4),
    "gelu": lambda: nn.Sequential(nn.Linear(4, 4), nn.GELU()),
    "gelu_tanh": lambda: nn.Sequential(nn.Linear(4, 4), nn.GELU(approximate="tanh")),
    "sdpa": Attention,
    "multihead_attention": MHA,
    "transformer_layer": lambda: nn.TransformerEncoderLayer(
        4, 2, 8, dropout=0.0, batch_first=True, activation="gelu"
    ),
}


def problem(name, seed=0):
    torch.manual_seed(seed)
    model = Tokens(LAYERS[name]()).to(DT).eval()
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 7, (6, 5), generator=gen)
    ids[:, -1] = 0  # padded positions
    y = torch.randint(0, 3, (6,), generator=gen)
    return model, [(ids[:4], y[:4]), (ids[4:], y[4:])]


def dense_reference(model, data):
    """Dense Hessian by reverse-over-reverse ``torch.func`` (math attention backend)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    names = [n for n, p in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    N = sum(len(y) for _, y in data)

    def f(flat):
        ps, start = {}, 0
        for n, s in zip(names, shapes):
            ps[n] = flat[start : start + s.numel()].view(s)
            start += s.numel()
        total = 0.0
        for X, y in data:
            out = functional_call(model, ps, (X,))
            total = total + len(y) / N * nn.functional.cross_entropy(out, y)
        return total

    with sdpa_kernel(SDPBackend.MATH):
        return jacrev(grad(f))(theta)


@pytest.mark.parametrize("name", list(LAYERS))
@pytest.mark.parametrize("mode", ["rev-rev", "fwd-rev"])
def test_hessian_of_real_layers_in_both_modes(name, mode):
    model, data = problem(name)
    H = cl.HessianOperator(model, nn.CrossEntropyLoss(), data, mode=mode).to_dense()
    ref = dense_reference(model, data)
    torch.testing.assert_close(H, ref, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(H, H.T, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("name", list(LAYERS))
def test_ggn_and_fisher_modes_agree_and_are_symmetric(name):
    model, data = problem(name)
    for cls in (cl.GGNOperator, cl.EmpiricalFisherOperator):
        A = cls(model, nn.CrossEntropyLoss(), data, mode="rev-rev").to_dense()
        B = cls(model, nn.CrossEntropyLoss(), data, mode="fwd-rev").to_dense()
        torch.testing.assert_close(A, B, rtol=1e-9, atol=1e-11)
        torch.testing.assert_close(B, B.T, rtol=1e-9, atol=1e-11)


def test_padding_rows_are_constants():
    model, data = problem("embedding_padding_idx")
    H = cl.HessianOperator(model, nn.CrossEntropyLoss(), data, mode="fwd-rev").to_dense()
    pad = slice(0, 4)  # emb.weight row 0 is the first 4 entries of the parameter vector
    assert H[pad].abs().max() == 0 and H[:, pad].abs().max() == 0
    assert H[4:8, 4:8].abs().max() > 0


def test_a_failed_product_leaves_no_cached_graph():
    model, data = problem("sdpa")
    calls = {"n": 0, "fail": False}

    def flaky(out, y):
        calls["n"] += 1
        if calls["fail"] and calls["n"] == 2:
            raise RuntimeError("boom")
        return nn.functional.cross_entropy(out, y)

    H = cl.HessianOperator(model, flaky, data)
    v = torch.ones(H.shape[0], dtype=DT)
    calls.update(n=0, fail=True)
    with pytest.raises(RuntimeError, match="boom"):
        H @ v
    assert not H._graphs and H._total is None  # batch 0's graph was built, then dropped
    calls["fail"] = False
    torch.testing.assert_close(H @ v, dense_reference(model, data) @ v, rtol=1e-9, atol=1e-11)
