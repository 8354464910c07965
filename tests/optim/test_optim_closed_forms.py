"""Closed forms: each step against its formula computed by hand in the test."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from curvlab._random import rademacher_like
from curvlab.optim import SADH, SCRN, SSDH, SSVP, AdaHessian, Apollo, DampedNewton, Sophia
from curvlab.optim.scrn import solve_tridiagonal_cubic

DTYPES = st.sampled_from([torch.float32, torch.float64])


def tol(dtype):
    return dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-12)


def diag_quadratic(n, seed, dtype, *, signed=False):
    """f(x) = 0.5 sum d_i x_i^2 + b.x: diagonal Hessian diag(d), gradient d*x + b."""
    g = torch.Generator().manual_seed(seed)
    d = torch.rand(n, generator=g, dtype=torch.float64) * 4 + 0.5
    if signed:
        d = d * (torch.randint(0, 2, (n,), generator=g) * 2 - 1)
    b = torch.randn(n, generator=g, dtype=torch.float64)
    x0 = torch.randn(n, generator=g, dtype=torch.float64)
    d, b, x0 = d.to(dtype), b.to(dtype), x0.to(dtype)
    x = torch.nn.Parameter(x0.clone())

    def closure():
        return 0.5 * (d * x * x).sum() + (b * x).sum()

    return x, x0, d, b, closure


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 12),
    seed=st.integers(0, 10**6),
    dtype=DTYPES,
    k=st.sampled_from([1.0, 0.5]),
    wd=st.sampled_from([0.0, 0.01]),
)
def test_adahessian_two_steps_match_formula(n, seed, dtype, k, wd):
    x, x0, d, b, closure = diag_quadratic(n, seed, dtype, signed=True)
    lr, (b1, b2), eps = 0.1, (0.9, 0.999), 1e-4
    opt = AdaHessian(
        [x], lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd, hessian_power=k, seed=seed
    )
    # by hand: the Hutchinson diagonal of a diagonal Hessian is exact, D = d
    xs, m, v = x0.clone(), torch.zeros_like(x0), torch.zeros_like(x0)
    for t in (1, 2):
        opt.step(closure)
        g = d * xs + b
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * d * d
        denom = (v.sqrt() ** k) / math.sqrt(1 - b2**t) ** k + eps
        xs = xs - lr * (m / (1 - b1**t) / denom + wd * xs)
        torch.testing.assert_close(x.detach(), xs, **tol(dtype))


def test_adahessian_presets():
    p = [torch.nn.Parameter(torch.ones(2))]
    off, to = AdaHessian.official(p), AdaHessian.torch_optimizer(p)
    assert off.defaults["lr"] == 0.15 and off.defaults["hessian_power"] == 1.0
    assert to.defaults["lr"] == 0.15 and to.defaults["hessian_power"] == 0.5
    assert AdaHessian(p).defaults["hessian_power"] == 1.0
    assert AdaHessian.official(p, lr=0.3).defaults["lr"] == 0.3


def test_hutchinson_probes_are_real_rademacher_not_row_sums():
    """The study's probe was always -1 (row sums H 1); ours averages to diag(H)."""
    gen = torch.Generator().manual_seed(0)
    z = rademacher_like([torch.empty(10000)], gen)[0]
    assert set(z.unique().tolist()) == {-1.0, 1.0}
    assert abs(float(z.mean())) < 0.05
    A = torch.tensor([[2.0, 1.5, -1.0], [1.5, 3.0, 0.5], [-1.0, 0.5, 1.0]], dtype=torch.float64)
    x = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    opt = AdaHessian([x], n_samples=4000, spatial_average=False, seed=1)
    opt.step(lambda: 0.5 * x @ A @ x + x.sum())
    D = (opt.state[x]["exp_hessian_diag_sq"] / (1 - 0.999)).sqrt()
    torch.testing.assert_close(D, A.diagonal().abs(), atol=0.1, rtol=0)
    assert (D - (A @ torch.ones(3, dtype=torch.float64)).abs()).abs().max() > 0.5


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 12), seed=st.integers(0, 10**6), dtype=DTYPES, wd=st.sampled_from([0.0, 0.1])
)
def test_sophia_h_two_steps_match_formula(n, seed, dtype, wd):
    x, x0, d, b, closure = diag_quadratic(n, seed, dtype, signed=True)
    lr, (b1, b2), rho, eps = 0.05, (0.965, 0.99), 0.04, 1e-12
    opt = Sophia(
        [x], lr=lr, betas=(b1, b2), rho=rho, weight_decay=wd, eps=eps, update_each=1, seed=seed
    )
    xs, m, h = x0.clone(), torch.zeros_like(x0), torch.zeros_like(x0)
    for _ in range(2):
        opt.step(closure)
        g = d * xs + b
        h = b2 * h + (1 - b2) * d  # u * (H u) = d exactly
        xs = xs * (1 - lr * wd)
        m = b1 * m + (1 - b1) * g
        xs = xs - lr * torch.clamp(m / torch.clamp(rho * h, min=eps), -1, 1)
        torch.testing.assert_close(x.detach(), xs, **tol(dtype))


def test_sophia_clip_rate_counts_the_clipped_coordinates():
    """clip_rate() against a count by hand: f = sum_i 0.5 d_i w_i^2 + c_i w_i over two tensors
    (the Hutchinson diagonal is exact), |m / max(rho h, eps)| > 1 clipped, weighted by size."""
    dt = torch.float64
    d = [torch.full((3,), 1.0, dtype=dt), torch.full((5,), 2.0, dtype=dt)]
    c = [torch.tensor(v, dtype=dt) for v in ([1.0, 1e-3, -0.5], [0.01, -0.01, 1.0, 0.0, 3.0])]
    ws = [torch.nn.Parameter(torch.zeros_like(di)) for di in d]
    lr, (b1, b2), rho, eps = 1e-3, (0.965, 0.99), 0.04, 1e-12
    opt = Sophia(ws, lr=lr, betas=(b1, b2), rho=rho, weight_decay=0.0, eps=eps, update_each=1)
    assert opt.clip_rate() == 0.0
    xs = [w.detach().clone() for w in ws]
    m = [torch.zeros_like(x) for x in xs]
    h = [torch.zeros_like(x) for x in xs]
    rates = []

    def closure():
        return sum(0.5 * (di * w * w).sum() + (ci * w).sum() for di, ci, w in zip(d, c, ws))

    for _ in range(3):
        opt.step(closure)
        clipped = 0
        for i in range(2):
            m[i] = b1 * m[i] + (1 - b1) * (d[i] * xs[i] + c[i])
            h[i] = b2 * h[i] + (1 - b2) * d[i]
            ratio = m[i] / torch.clamp(rho * h[i], min=eps)
            clipped += int((ratio.abs() > 1).sum())
            xs[i] = xs[i] - lr * ratio.clamp(-1, 1)
        rates.append(opt.clip_rate())
        assert rates[-1] == pytest.approx(clipped / 8, abs=1e-6)  # per-tensor rates in float32
    # at the start |ratio_i| = 87.5 |c_i| / d_i: 2 of 3 and 2 of 5 coordinates are clipped
    assert rates[0] == pytest.approx(0.5, abs=1e-6)


@pytest.mark.parametrize("cls", [SSDH, SADH])
@settings(max_examples=20, deadline=None)
@given(
    n=st.integers(1, 12),
    seed=st.integers(0, 10**6),
    dtype=DTYPES,
    clip=st.booleans(),
    wd=st.sampled_from([0.0, 0.1]),
)
def test_ssdh_sadh_steps_match_formula(cls, n, seed, dtype, clip, wd):
    x, x0, d, b, closure = diag_quadratic(n, seed, dtype, signed=True)
    lr, (b1, b2), rho, eps = 0.1, (0.9, 0.99), 0.05, 1e-12
    opt = cls(
        [x],
        lr=lr,
        betas=(b1, b2),
        rho=rho,
        weight_decay=wd,
        eps=eps,
        update_each=2,
        clip=clip,
        seed=seed,
    )
    xs, m, v = x0.clone(), torch.zeros_like(x0), torch.zeros_like(x0)
    for t in range(3):
        opt.step(closure)
        g = d * xs + b
        m = b1 * m + (1 - b1) * g
        if t % 2 == 0:  # refresh at steps 0 and 2
            v = b2 * v + (1 - b2) * (d * d if cls is SSDH else d.abs())
        u = m / ((v.sqrt() if cls is SSDH else v) + eps)
        if clip:
            u = u.clamp(-rho, rho)
        xs = xs * (1 - lr * wd) - lr * u
        torch.testing.assert_close(x.detach(), xs, **tol(dtype))


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 10), seed=st.integers(0, 10**6), dtype=DTYPES, clip=st.booleans())
def test_ssvp_step_matches_formula_with_a_full_hessian(n, seed, dtype, clip):
    g_ = torch.Generator().manual_seed(seed)
    M = torch.randn(n, n, generator=g_, dtype=torch.float64)
    A = (M + M.T).to(dtype)
    b = torch.randn(n, generator=g_, dtype=torch.float64).to(dtype)
    x0 = torch.randn(n, generator=g_, dtype=torch.float64).to(dtype)
    x = torch.nn.Parameter(x0.clone())
    lr, (b1, b2), rho, eps = 0.1, (0.9, 0.99), 0.05, 1e-12
    opt = SSVP([x], lr=lr, betas=(b1, b2), rho=rho, eps=eps, clip=clip, update_each=1)
    opt.step(lambda: 0.5 * x @ A @ x + b @ x)
    g = A @ x0 + b
    m = (1 - b1) * g
    Hv = A @ (-rho * torch.sign(m))
    s = (1 - b2) * Hv * Hv
    u = m / (s.sqrt() + eps)
    if clip:
        u = u.clamp(-rho, rho)
    torch.testing.assert_close(x.detach(), x0 - lr * u, **tol(dtype))


# -- Newton steps ----------------------------------------------------------------------------


def spd_quadratic(n, seed, dtype=torch.float64, shift=0.5):
    g = torch.Generator().manual_seed(seed)
    M = torch.randn(n, n, generator=g, dtype=torch.float64)
    A = (M @ M.T / n + shift * torch.eye(n, dtype=torch.float64)).to(dtype)
    b = torch.randn(n, generator=g, dtype=torch.float64).to(dtype)
    x0 = torch.randn(n, generator=g, dtype=torch.float64).to(dtype)
    return A, b, x0


@pytest.mark.parametrize("solver", ["cg", "dense"])
@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 15), seed=st.integers(0, 10**6))
def test_classic_newton_solves_a_convex_quadratic_in_one_step(solver, n, seed):
    A, b, x0 = spd_quadratic(n, seed)
    W = torch.nn.Parameter(x0.clone().reshape(n, 1))  # a 2-D parameter: shapes are handled
    opt = DampedNewton([W], variant="classic", solver=solver)
    opt.step(lambda: 0.5 * W[:, 0] @ A @ W[:, 0] - b @ W[:, 0])
    torch.testing.assert_close(W.detach()[:, 0], torch.linalg.solve(A, b), rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("solver", ["cg", "dense"])
@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 12), seed=st.integers(0, 10**6), L=st.floats(0.01, 10.0))
def test_gradreg_step_matches_formula(solver, n, seed, L):
    A, b, x0 = spd_quadratic(n, seed, shift=-0.2)  # may be indefinite: damping still helps
    x = torch.nn.Parameter(x0.clone())
    opt = DampedNewton([x], variant="gradreg", L=L, solver=solver)
    opt.step(lambda: 0.5 * x @ A @ x - b @ x)
    g = A @ x0 - b
    lam = math.sqrt(L * float(g.norm()))
    expected = x0 - torch.linalg.solve(A + lam * torch.eye(n, dtype=A.dtype), g)
    if solver == "cg" and torch.linalg.eigvalsh(A + lam * torch.eye(n, dtype=A.dtype))[0] <= 0:
        return  # CG needs a positive-definite system
    torch.testing.assert_close(x.detach(), expected, rtol=1e-7, atol=1e-8)
    assert opt.last_info[0]["damping"] == pytest.approx(lam)


@settings(max_examples=15, deadline=None)
@given(
    n=st.integers(1, 10),
    seed=st.integers(0, 10**6),
    lam=st.floats(0.0, 5.0),
    lr=st.floats(0.1, 1.0),
)
def test_fixed_damping_step_matches_formula(n, seed, lam, lr):
    A, b, x0 = spd_quadratic(n, seed)
    x = torch.nn.Parameter(x0.clone())
    opt = DampedNewton([x], lr=lr, variant="fixed", damping=lam, solver="dense")
    opt.step(lambda: 0.5 * x @ A @ x - b @ x)
    g = A @ x0 - b
    expected = x0 - lr * torch.linalg.solve(A + lam * torch.eye(n, dtype=A.dtype), g)
    torch.testing.assert_close(x.detach(), expected, rtol=1e-9, atol=1e-10)


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 10), seed=st.integers(0, 10**6), L=st.floats(0.01, 10.0))
def test_aic_step_matches_formula(n, seed, L):
    A, b, x0 = spd_quadratic(n, seed)
    x = torch.nn.Parameter(x0.clone())
    opt = DampedNewton([x], variant="aic", L=L, solver="cg")
    opt.step(lambda: 0.5 * x @ A @ x - b @ x)
    g = A @ x0 - b
    newton = torch.linalg.solve(A, g)
    G = L * math.sqrt(float(g @ newton))
    alpha = (math.sqrt(1 + 2 * G) - 1) / G
    torch.testing.assert_close(x.detach(), x0 - alpha * newton, rtol=1e-7, atol=1e-9)


def test_gradreg_converges_on_a_convex_problem():
    """Mishchenko's method on a smooth convex function (log-sum-exp + quadratic)."""
    g = torch.Generator().manual_seed(0)
    C = torch.randn(20, 5, generator=g, dtype=torch.float64)
    x = torch.nn.Parameter(torch.ones(5, dtype=torch.float64) * 3)

    def f():
        return torch.logsumexp(C @ x, 0) + 0.05 * x @ x

    opt = DampedNewton([x], variant="gradreg", L=1.0)
    for _ in range(30):
        opt.step(f)
    grad = torch.autograd.grad(f(), x)[0]
    assert float(grad.norm()) < 1e-8


# -- SCRN ------------------------------------------------------------------------------------


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 8), seed=st.integers(0, 10**6), rho=st.floats(0.1, 5.0))
def test_scrn_cauchy_step_matches_closed_form(n, seed, rho):
    g_ = torch.Generator().manual_seed(seed)
    M = torch.randn(n, n, generator=g_, dtype=torch.float64)
    A = M + M.T  # indefinite in general
    b = 10 * torch.randn(n, generator=g_, dtype=torch.float64)
    x0 = torch.randn(n, generator=g_, dtype=torch.float64)
    x = torch.nn.Parameter(x0.clone())
    g = (A @ x0 + b).numpy()
    l = 0.5 * math.sqrt(rho * float(np.linalg.norm(g)))  # noqa: E741 - so ||g|| >= l^2/rho
    opt = SCRN([x], rho=rho, l=l)
    opt.step(lambda: 0.5 * x @ A @ x + b @ x)
    assert opt.last_info[0]["cauchy"]
    gn = np.linalg.norm(g)
    a = g @ A.numpy() @ g / (rho * gn**2)
    Rc = -a + math.sqrt(a * a + 2 * gn / rho)
    np.testing.assert_allclose(x.detach().numpy(), x0.numpy() - Rc * g / gn, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("subsolver", ["gd", "lanczos"])
def test_scrn_escapes_the_strict_saddle_where_gradient_descent_stays(subsolver):
    """f(x, y) = x^2 - y^2 + y^4/4 from the ridge y = 0: GD converges to the saddle (0, 0)."""

    def make():
        p = torch.nn.Parameter(torch.tensor([1.5, 0.0], dtype=torch.float64))
        return p, lambda: p[0] ** 2 - p[1] ** 2 + p[1] ** 4 / 4

    p, f = make()
    gd = torch.optim.SGD([p], lr=0.05)
    for _ in range(200):
        gd.zero_grad()
        f().backward()
        gd.step()
    assert float(p[1].detach()) == 0.0 and abs(float(p[0].detach())) < 1e-6  # stuck at the saddle

    p, f = make()
    opt = SCRN([p], rho=1.0, l=2.0, inner_steps=10, subsolver=subsolver, seed=3)
    for _ in range(100):
        opt.step(f)
    # the minima are (0, +-sqrt(2)) with f = -1
    assert abs(abs(float(p[1].detach())) - math.sqrt(2)) < 1e-2
    assert float(f().detach()) < -0.999


@settings(max_examples=25, deadline=None)
@given(
    k=st.integers(1, 8),
    seed=st.integers(0, 10**6),
    rho=st.floats(0.1, 10.0),
    bnorm=st.floats(0.01, 10.0),
)
def test_tridiagonal_cubic_solution_satisfies_global_optimality(k, seed, rho, bnorm):
    """Nesterov-Polyak: z* minimizes iff (T + lam I) z = -b e1, lam = rho/2 ||z||, T + lam I psd."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(k, generator=g, dtype=torch.float64) * 3
    off = torch.randn(k - 1, generator=g, dtype=torch.float64).abs() + 0.1
    T = torch.diag(a) + torch.diag(off, 1) + torch.diag(off, -1)
    z = solve_tridiagonal_cubic(T, bnorm, rho)
    lam = rho / 2 * float(z.norm())
    e1 = torch.zeros(k, dtype=torch.float64)
    e1[0] = bnorm
    resid = (T + lam * torch.eye(k, dtype=torch.float64)) @ z + e1
    scale = bnorm + float(torch.linalg.matrix_norm(T, 2) + lam) * float(z.norm())
    assert float(resid.norm()) <= 1e-8 * scale
    assert float(torch.linalg.eigvalsh(T)[0]) + lam >= -1e-8

    def model(v):
        return float(e1 @ v + 0.5 * v @ T @ v + rho / 6 * v.norm() ** 3)

    for _ in range(20):  # no random point does better
        w = z + 0.3 * torch.randn(k, generator=g, dtype=torch.float64)
        assert model(w) >= model(z) - 1e-10


# -- Apollo ----------------------------------------------------------------------------------


@pytest.mark.parametrize("sigma", [1.0, 0.01])
def test_apollo_two_steps_match_hand_computation(sigma):
    """Scalar parameter, f = 0.5 c w^2: two steps computed by hand from the update rules."""
    c, w0, beta, eps, lr, init_lr, warmup = 3.0, 2.0, 0.9, 1e-4, 0.5, 0.01, 10
    w = torch.nn.Parameter(torch.tensor([w0], dtype=torch.float64))
    opt = Apollo([w], lr=lr, beta=beta, eps=eps, sigma=sigma, warmup=warmup, init_lr=init_lr)
    closure = lambda: 0.5 * c * (w * w).sum()  # noqa: E731
    # step 1: alpha = 1, m = g1, B stays 0 (previous direction 0), D = sigma
    opt.step(closure)
    g1 = c * w0
    w1 = w0 - init_lr * g1 / sigma
    assert float(w.detach()) == pytest.approx(w1, rel=1e-12)
    # step 2
    opt.step(closure)
    g2 = c * w1
    alpha = (1 - beta) / (1 - beta**2)
    m2 = g1 + alpha * (g2 - g1)
    d_prev = g1 / sigma
    s = abs(d_prev) + eps
    u = d_prev / s
    delta = -alpha * (g2 - g1) / s * u - 0.0
    B = delta * u * u
    D = max(abs(B), sigma)
    lr1 = (lr - init_lr) * 1 / warmup + init_lr
    assert float(w.detach()) == pytest.approx(w1 - lr1 * m2 / D, rel=1e-12)


def test_scrn_subsolver_divergence_is_reported():
    """l = 0.1 < ||H|| = 2 makes the inner step 1/(20 l) unstable: a clear error, not NaNs."""
    p = torch.nn.Parameter(torch.tensor([0.01, 0.0]))
    opt = SCRN([p], rho=5.0, l=0.1)
    with pytest.raises(ValueError, match="increase l|Increase l"):
        for _ in range(20):
            opt.step(lambda: p[0] ** 2 - p[1] ** 2 + p[1] ** 4 / 4)


def test_hyperparameter_aliases():
    p = [torch.nn.Parameter(torch.ones(2))]
    assert Sophia(p, estimator="G").estimator == "gnb"
    assert Sophia(p, estimator="H").estimator == "hutchinson"
    assert SCRN(p, subsolver="krylov").defaults["subsolver"] == "lanczos"
    opt = DampedNewton(p, variant="fixed", alpha=0.5, lam=2.0)
    assert opt.defaults["lr"] == 0.5 and opt.defaults["damping"] == 2.0
