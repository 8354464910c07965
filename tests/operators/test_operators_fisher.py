"""EmpiricalFisherOperator (curvlab/operators/fisher.py) against dense float64 references; its
normalization (per-sample loops) and E[EF] = GGN under the model's own labels."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from operator_problems import LOSSES, MODES, make_loss, make_problem
from reference import dense_empirical_fisher, dense_ggn
from torch import nn

import curvlab as cl

DT = torch.float64


@given(
    kind=st.sampled_from(LOSSES),
    width=st.integers(1, 5),
    seed=st.integers(0, 10_000),
    mode=st.sampled_from(MODES),
    reduction=st.sampled_from(["mean", "sum"]),
)
def test_empirical_fisher_matches_dense(kind, width, seed, mode, reduction):
    model, data = make_problem(kind, "mlp", width, 7, seed, [2, 5])
    loss = make_loss(kind, reduction)
    F = cl.EmpiricalFisherOperator(model, loss, data, mode=mode)
    ref = dense_empirical_fisher(model, loss, data)
    torch.testing.assert_close(F.to_dense(), ref, rtol=1e-9, atol=1e-10)


# -- the empirical Fisher's normalization ----------------------------------------------------------
class TokenModel(nn.Module):
    """(B, T, d) inputs -> (B, V, T) logits, the layout of nn.CrossEntropyLoss over tokens."""

    def __init__(self, d=3, vocab=4):
        super().__init__()
        self.lin = nn.Linear(d, vocab)

    def forward(self, x):
        return self.lin(torch.tanh(x)).transpose(1, 2)


def ef_problem(kind, C, reduction, seed=0, n=10):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    if kind == "tokens":
        model = TokenModel(3, 4).to(DT)
        X = torch.randn(n, 5, 3, generator=gen, dtype=DT)
        y = torch.randint(0, 4, (n, 5), generator=gen)
        y[0, 1] = y[3, 4] = -100  # ignored positions do not count
        return model, nn.CrossEntropyLoss(reduction=reduction), X, y
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, C)).to(DT)
    X = torch.randn(n, 3, generator=gen, dtype=DT)
    if kind == "mse":
        return model, nn.MSELoss(reduction=reduction), X, torch.randn(n, C, generator=gen, dtype=DT)
    if kind == "bce":
        y = torch.randint(0, 2, (n, C), generator=gen).to(DT)
        return model, nn.BCEWithLogitsLoss(reduction=reduction), X, y
    C = max(C, 2)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, C)).to(DT)
    return (
        model,
        nn.CrossEntropyLoss(reduction=reduction),
        X,
        torch.randint(0, C, (n,), generator=gen),
    )


@pytest.mark.parametrize("mode", ["rev-rev", "fwd-rev"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize(
    "kind,C",
    [
        ("mse", 1),
        ("mse", 2),
        ("mse", 3),
        ("bce", 1),
        ("bce", 3),
        ("ce", 2),
        ("ce", 3),
        ("tokens", 4),
    ],
)
def test_empirical_fisher_matches_per_sample_loop(kind, C, reduction, mode):
    model, loss_fn, X, y = ef_problem(kind, C, reduction)
    data = [(X[:4], y[:4]), (X[4:], y[4:])]
    F = cl.EmpiricalFisherOperator(model, loss_fn, data, mode=mode)
    ref = dense_empirical_fisher(model, loss_fn, data)
    if kind == "tokens" and reduction == "mean":
        # batch-size weights with unequal counted positions per batch (two are ignored):
        # each batch's terms are weighted (B_b / N) / M_b, not 1 / M
        counts = [int((yb != -100).sum()) for _, yb in data]
        ref = None
        parts = []
        for (Xb, yb), Mb in zip(data, counts):
            parts.append(dense_empirical_fisher(model, loss_fn, [(Xb, yb)]) * Mb)
            parts[-1] *= (len(yb) / len(y)) / Mb
        ref = sum(parts)
    torch.testing.assert_close(F.to_dense(), ref, rtol=1e-9, atol=1e-11)


def sample_labels(kind, out, gen):
    """Labels drawn from the model's predictive distribution (the likelihood of the loss)."""
    if kind == "mse":  # exp(-(f - y)^2): a Gaussian of variance 1/2
        return out + torch.randn(out.shape, generator=gen, dtype=out.dtype) * 0.5**0.5
    if kind == "bce":
        return (torch.rand(out.shape, generator=gen, dtype=out.dtype) < torch.sigmoid(out)).to(
            out.dtype
        )
    p = torch.softmax(out, dim=1).movedim(1, -1)
    flat = p.reshape(-1, p.shape[-1])
    return torch.multinomial(flat, 1, generator=gen).reshape(p.shape[:-1])


@pytest.mark.parametrize("kind,C", [("mse", 1), ("mse", 3), ("bce", 3), ("ce", 3), ("tokens", 4)])
def test_empirical_fisher_expectation_is_the_ggn(kind, C):
    """E over labels drawn from the model of the empirical Fisher = the GGN (trace within 2 %
    at 4,000 draws): the empirical Fisher of R copies of the inputs, each with its own labels,
    is the average of R empirical Fishers."""
    model, loss_fn, X, y = ef_problem(kind, C, "mean", seed=1, n=6)
    if kind == "tokens":
        y = y.clamp_min(0)
    draws = 4000
    gen = torch.Generator().manual_seed(12345)
    with torch.no_grad():
        out = model(X)
    Xr = X.repeat(draws, *[1] * (X.dim() - 1))
    yr = sample_labels(kind, out.repeat(draws, *[1] * (out.dim() - 1)), gen)
    F = cl.EmpiricalFisherOperator(model, loss_fn, [(Xr, yr)], check_deterministic=False)
    G = dense_ggn(model, loss_fn, [(X, y)])
    ratio = torch.trace(F.to_dense()) / torch.trace(G)
    assert abs(float(ratio) - 1.0) < 0.02, float(ratio)
