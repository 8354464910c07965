"""curvlab.func: pure products over parameter dicts."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn
from torch.func import functional_call, hessian, jacrev

from curvlab._params import flatten, unflatten_dict
from curvlab.func import ggnvp, hvp

DT = torch.float64


@given(seed=st.integers(0, 1000), n=st.integers(1, 6), mode=st.sampled_from(["rev-rev", "fwd-rev"]))
def test_hvp_quadratic_closed_form(seed, n, mode):
    gen = torch.Generator().manual_seed(seed)
    A = torch.randn(n, n, generator=gen, dtype=DT)
    A = A + A.T
    b = torch.randn(n, generator=gen, dtype=DT)

    def f(p):
        x = p["x"]
        return 0.5 * x @ A @ x + b @ x + torch.sin(p["s"]).sum()

    x = torch.randn(n, generator=gen, dtype=DT)
    s = torch.randn(2, generator=gen, dtype=DT)
    v = {"x": torch.randn(n, generator=gen, dtype=DT), "s": torch.randn(2, generator=gen, dtype=DT)}
    out = hvp(f, {"x": x, "s": s}, v, mode=mode)
    torch.testing.assert_close(out["x"], A @ v["x"])
    torch.testing.assert_close(out["s"], -torch.sin(s) * v["s"])
    flat = hvp(f, {"x": x, "s": s}, flatten(v), mode=mode)
    torch.testing.assert_close(flat, flatten(out))


@pytest.mark.parametrize("mode", ["rev-rev", "fwd-rev"])
def test_hvp_network_against_dense(mode):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).to(DT)
    X = torch.randn(5, 3, dtype=DT)
    y = torch.tensor([0, 1, 1, 0, 1])
    params = {n: p.detach() for n, p in model.named_parameters()}

    def f(p):
        return nn.functional.cross_entropy(functional_call(model, p, (X,)), y)

    theta = flatten(params)
    Hd = hessian(lambda t: f(unflatten_dict(t, params)))(theta)
    v = torch.randn(theta.numel(), dtype=DT)
    torch.testing.assert_close(hvp(f, params, v, mode=mode), Hd @ v)


@pytest.mark.parametrize("mode", ["rev-rev", "fwd-rev"])
def test_ggnvp_against_dense(mode):
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).to(DT)
    X = torch.randn(5, 3, dtype=DT)
    y = torch.randn(5, 2, dtype=DT)
    params = {n: p.detach() for n, p in model.named_parameters()}
    theta = flatten(params)

    def model_fn(p):
        return functional_call(model, p, (X,))

    def loss_fn(o):
        return ((o - y) ** 2).mean()

    out = model_fn(params)
    J = jacrev(lambda t: model_fn(unflatten_dict(t, params)))(theta).reshape(out.numel(), -1)
    Ho = hessian(lambda o: loss_fn(o.reshape(out.shape)))(out.reshape(-1))
    v = torch.randn(theta.numel(), dtype=DT)
    torch.testing.assert_close(ggnvp(model_fn, loss_fn, params, v, mode=mode), J.T @ Ho @ J @ v)


def test_func_errors():
    p = {"x": torch.ones(2)}
    with pytest.raises(ValueError, match="mode"):
        hvp(lambda q: q["x"].sum(), p, torch.ones(2), mode="fwd-fwd")
    with pytest.raises(ValueError, match="scalar"):
        hvp(lambda q: q["x"] ** 2, p, torch.ones(2))
    with pytest.raises(ValueError, match="keys"):
        hvp(lambda q: q["x"].sum(), p, {"y": torch.ones(2)})
    with pytest.raises(ValueError, match="shape"):
        hvp(lambda q: q["x"].sum(), p, {"x": torch.ones(3)})
    with pytest.raises(ValueError, match="entries"):
        hvp(lambda q: q["x"].sum(), p, torch.ones(3))
