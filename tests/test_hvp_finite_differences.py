"""Hessian-vector products against central finite differences of the gradient."""

import torch
from hypothesis import given
from hypothesis import strategies as st
from operator_problems import LOSSES, MODES, make_loss, make_problem
from torch.func import functional_call, grad

import curvlab as cl
from curvlab.params import flatten, unflatten_dict


def grad_at(model, loss_fn, data, theta):
    """Full-data gradient at the flat parameters ``theta``, by torch.func (not curvlab)."""
    like = {n: p.detach() for n, p in model.named_parameters()}
    X = torch.cat([b[0] for b in data])
    y = torch.cat([b[1] for b in data])

    def f(pd):
        return loss_fn(functional_call(model, pd, (X,)), y)

    return flatten(grad(f)(unflatten_dict(theta, like)))


@given(
    kind=st.sampled_from(LOSSES),
    arch=st.sampled_from(["mlp", "cnn"]),
    width=st.integers(1, 6),
    seed=st.integers(0, 10_000),
    mode=st.sampled_from(MODES),
)
def test_hvp_equals_central_difference(kind, arch, width, seed, mode):
    model, data = make_problem(kind, arch, width, 10, seed, [3, 7])
    loss = make_loss(kind)
    H = cl.HessianOperator(model, loss, data, mode=mode)
    theta = flatten([p.detach() for p in model.parameters()])
    gen = torch.Generator().manual_seed(seed)
    v = torch.randn(theta.numel(), generator=gen, dtype=theta.dtype)
    v = v / v.norm()
    hv = H @ v
    eps = 1e-4
    fd = grad_at(model, loss, data, theta + eps * v) - grad_at(model, loss, data, theta - eps * v)
    fd = fd / (2 * eps)
    # central differences: truncation error O(eps^2 * ||third derivative||), rounding
    # O(machine eps * ||g|| / eps); both far below 1e-6 here in float64.
    torch.testing.assert_close(hv, fd, rtol=1e-5, atol=1e-6)
