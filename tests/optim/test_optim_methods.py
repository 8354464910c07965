"""Method-specific checks: AdaHessian on every rank, memory, Sophia-G, Newton-CG, blocks."""

from __future__ import annotations

import gc
import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, hessian, jacrev

from curvlab._random import rademacher_like
from curvlab.optim import AdaHessian, DampedNewton, NewtonCG, Sophia
from curvlab.optim.newton_cg import _GGNBlockOperator
from curvlab.optim.sophia import sampled_label_loss


class AllRanks(nn.Module):
    """Parameters of rank 1 to 5: Conv1d (3-D), Conv2d (4-D), Conv3d (5-D), Linear, a bias."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv1d(2, 3, 3)
        self.c2 = nn.Conv2d(2, 3, 3)
        self.c3 = nn.Conv3d(2, 3, 2)
        self.fc = nn.Linear(9, 2)

    def forward(self, x1, x2, x3):
        a = torch.tanh(self.c1(x1)).mean(-1)
        b = torch.tanh(self.c2(x2)).mean((-1, -2))
        c = torch.tanh(self.c3(x3)).mean((-1, -2, -3))
        return self.fc(torch.cat([a, b, c], 1))


def all_ranks_problem():
    torch.manual_seed(0)
    model = AllRanks()
    X = (torch.randn(8, 2, 6), torch.randn(8, 2, 5, 5), torch.randn(8, 2, 3, 3, 3))
    y = torch.randint(0, 2, (8,))
    return model, lambda: F.cross_entropy(model(*X), y)


def test_adahessian_runs_on_parameters_of_every_rank_with_spatial_averaging():
    model, closure = all_ranks_problem()
    params = list(model.parameters())
    assert {p.dim() for p in params} == {1, 2, 3, 4, 5}
    b2, seed = 0.999, 4
    # the probes the optimizer will draw, and H z by autograd, computed here independently
    z = rademacher_like(params, torch.Generator().manual_seed(seed))
    g = torch.autograd.grad(closure(), params, create_graph=True)
    Hz = torch.autograd.grad(g, params, grad_outputs=z)
    opt = AdaHessian(params, seed=seed)
    l0 = float(closure().detach())
    opt.step(closure)
    for p, zi, hz in zip(params, z, Hz):
        D = (zi * hz).abs()
        if p.dim() >= 3:  # a conv kernel (out, in, *spatial): average over the spatial dims
            D = D.mean(dim=tuple(range(2, p.dim())), keepdim=True).expand_as(p)
        expected = (1 - b2) * D * D
        torch.testing.assert_close(opt.state[p]["exp_hessian_diag_sq"], expected)
    for _ in range(10):
        opt.step(closure)
    assert float(closure().detach()) < l0


def test_adahessian_without_spatial_averaging_is_elementwise():
    model, closure = all_ranks_problem()
    params = list(model.parameters())
    z = rademacher_like(params, torch.Generator().manual_seed(0))
    g = torch.autograd.grad(closure(), params, create_graph=True)
    Hz = torch.autograd.grad(g, params, grad_outputs=z)
    opt = AdaHessian(params, spatial_average=False, seed=0)
    opt.step(closure)
    for p, zi, hz in zip(params, z, Hz):
        torch.testing.assert_close(opt.state[p]["exp_hessian_diag_sq"], 1e-3 * (zi * hz) ** 2)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _num_tensors() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if issubclass(type(o), torch.Tensor))


@pytest.mark.parametrize("legacy", [False, True])
def test_adahessian_200_steps_on_a_cnn_keep_memory_flat(legacy):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.Tanh(), nn.AvgPool2d(2), nn.Conv2d(4, 4, 3), nn.Tanh(),
        nn.Flatten(), nn.Linear(4 * 4 * 4, 10),
    )
    X, y = torch.randn(16, 1, 14, 14), torch.randint(0, 10, (16,))
    opt = AdaHessian(model.parameters(), lr=0.01)

    def closure():
        return F.cross_entropy(model(X), y)

    def step():
        if legacy:
            opt.zero_grad()
            closure().backward(create_graph=True)
            opt.step()
        else:
            opt.step(closure)

    with pytest.warns() if legacy else _null():
        for _ in range(20):
            step()
    n20, rss20 = _num_tensors(), _rss_bytes() if os.path.exists("/proc/self/statm") else 0
    for _ in range(180):
        step()
    n200 = _num_tensors()
    assert n200 == n20
    if os.path.exists("/proc/self/statm"):
        assert _rss_bytes() - rss20 < 8 * 2**20
    for p in model.parameters():
        assert p.grad.grad_fn is None and not p.grad.requires_grad


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# -- Sophia-G ----------------------------------------------------------------------------------


@pytest.mark.parametrize("classes", [1, 3])
def test_gnb_estimator_is_unbiased_for_the_gauss_newton_diagonal(classes):
    """E[B ghat^2] = diag(GGN) of the cross-entropy of a linear model, in closed form."""
    torch.manual_seed(0)
    B, d = 6, 4
    X = torch.randn(B, d, dtype=torch.float64)
    W = nn.Parameter(torch.randn(classes, d, dtype=torch.float64) * 0.5)
    logits = X @ W.T
    if classes == 1:
        p = torch.sigmoid(logits[:, 0]).detach()
        ggn_diag = ((p * (1 - p))[:, None] * X * X).mean(0)[None, :]
    else:
        P = torch.softmax(logits, -1).detach()
        ggn_diag = torch.einsum("bc,bj->cj", P - P * P, X * X) / B
    gen = torch.Generator().manual_seed(1)
    acc = torch.zeros_like(W)
    draws = 1500
    for _ in range(draws):
        loss_hat, num = sampled_label_loss(logits, gen)
        (gh,) = torch.autograd.grad(loss_hat, W, retain_graph=True)
        acc += num * gh * gh
    torch.testing.assert_close(acc / draws, ggn_diag, rtol=0.15, atol=3e-3)


def test_sophia_g_uses_the_sampled_label_estimate():
    torch.manual_seed(0)
    model = nn.Linear(5, 3)
    X, y = torch.randn(10, 5), torch.randint(0, 3, (10,))

    def closure():
        out = model(X)
        return F.cross_entropy(out, y), out

    out = model(X)
    loss_hat, num = sampled_label_loss(out, torch.Generator().manual_seed(3))
    gh = torch.autograd.grad(loss_hat, list(model.parameters()))
    opt = Sophia(model.parameters(), estimator="gnb", seed=3)
    opt.step(closure)
    for p, g in zip(model.parameters(), gh):
        torch.testing.assert_close(opt.state[p]["hessian"], (1 - 0.99) * num * g * g)
    assert num == 10


# -- Newton-CG ---------------------------------------------------------------------------------


@pytest.mark.parametrize("start", [(-1.2, 1.0), (2.0, -1.0), (0.0, 3.0)])
def test_newton_cg_solves_rosenbrock(start):
    xy = nn.Parameter(torch.tensor(start, dtype=torch.float64))

    def rosen():
        return (1 - xy[0]) ** 2 + 100 * (xy[1] - xy[0] ** 2) ** 2

    opt = NewtonCG([xy])
    for _ in range(200):
        loss = opt.step(rosen)
        if float(loss) < 1e-20:
            break
    assert float(rosen().detach()) < 1e-12
    torch.testing.assert_close(xy.detach(), torch.ones(2, dtype=torch.float64), atol=1e-6,
                               rtol=0)


def test_ggn_block_operator_matches_dense_jacobian_formula():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    X, Y = torch.randn(7, 3, dtype=torch.float64), torch.randn(7, 2, dtype=torch.float64)
    params = list(model.parameters())
    names = [n for n, _ in model.named_parameters()]
    out = model(X)
    loss = F.mse_loss(out, Y)
    op = _GGNBlockOperator(loss, out, params)

    theta = torch.cat([p.detach().reshape(-1) for p in params])

    def f_out(flat):
        chunks = torch.split(flat, [p.numel() for p in params])
        pd = {n: c.view_as(p) for n, c, p in zip(names, chunks, params)}
        return functional_call(model, pd, (X,)).reshape(-1)

    J = jacrev(f_out)(theta)
    Hl = hessian(lambda o: F.mse_loss(o.view(7, 2), Y))(out.detach().reshape(-1))
    G = J.T @ Hl @ J
    torch.testing.assert_close(op.to_dense(), G, rtol=1e-9, atol=1e-12)


def test_newton_cg_with_ggn_fits_nonlinear_least_squares():
    torch.manual_seed(0)
    X = torch.linspace(-1, 1, 40, dtype=torch.float64)[:, None]
    Y = torch.sin(2 * X)
    model = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1)).double()

    def closure():
        out = model(X)
        return F.mse_loss(out, Y), out

    opt = NewtonCG(model.parameters(), curvature="ggn")
    l0 = float(closure()[0].detach())
    for _ in range(30):
        opt.step(closure)
    assert float(closure()[0].detach()) < 1e-3 * l0


def test_newton_cg_line_search_never_increases_the_loss():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 1))
    X, Y = torch.randn(30, 3), torch.randn(30, 1)
    closure = lambda: F.mse_loss(model(X), Y)  # noqa: E731
    opt = NewtonCG(model.parameters(), damping=1e-3, adapt_damping=False)
    prev = float(closure().detach())
    for _ in range(10):
        opt.step(closure)
        cur = float(closure().detach())
        assert cur <= prev + 1e-7
        prev = cur


# -- blocks ------------------------------------------------------------------------------------


def test_damped_newton_param_groups_are_separate_blocks():
    """Two groups: x_i <- x_i - H_ii^{-1} g_i (the coupling H_12 is ignored)."""
    g = torch.Generator().manual_seed(0)
    M = torch.randn(5, 5, generator=g, dtype=torch.float64)
    A = M @ M.T + 5 * torch.eye(5, dtype=torch.float64)
    b = torch.randn(5, generator=g, dtype=torch.float64)
    x0 = torch.randn(5, generator=g, dtype=torch.float64)
    u, v = nn.Parameter(x0[:2].clone()), nn.Parameter(x0[2:].clone())

    def f():
        x = torch.cat([u, v])
        return 0.5 * x @ A @ x - b @ x

    opt = DampedNewton([{"params": [u]}, {"params": [v], "solver": "dense"}], variant="classic")
    opt.step(f)
    grad = A @ x0 - b
    torch.testing.assert_close(u.detach(), x0[:2] - torch.linalg.solve(A[:2, :2], grad[:2]))
    torch.testing.assert_close(v.detach(), x0[2:] - torch.linalg.solve(A[2:, 2:], grad[2:]))
