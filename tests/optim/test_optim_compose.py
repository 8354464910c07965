"""BlockOptimizer: several optimizers on disjoint blocks with one closure."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from optim_problems import spy_on_take_gradient
from torch import nn

from curvlab.optim import (
    SSDH,
    AdaHessian,
    BlockOptimizer,
    DampedNewton,
    NewtonCG,
    Sophia,
    _base,
    compose,
)


def separable_problem():
    """f(a, b) = fa(a) + fb(b): a composed step must equal the members' separate steps."""
    g = torch.Generator().manual_seed(0)
    Ca = torch.randn(6, 3, generator=g, dtype=torch.float64)
    Cb = torch.randn(6, 4, generator=g, dtype=torch.float64)
    a = nn.Parameter(torch.randn(3, generator=g, dtype=torch.float64))
    b = nn.Parameter(torch.randn(4, generator=g, dtype=torch.float64))

    def fa(x=a):
        return torch.logsumexp(Ca @ x, 0) + 0.1 * (x**4).sum()

    def fb(x=b):
        return torch.logsumexp(Cb @ x, 0) + 0.1 * (x**4).sum()

    return a, b, fa, fb


MEMBERS = [
    (lambda p: torch.optim.Adam(p, lr=0.1), lambda p: DampedNewton(p, variant="gradreg")),
    (lambda p: AdaHessian(p, lr=0.1, seed=1), lambda p: DampedNewton(p, solver="dense")),
    (lambda p: SSDH(p, update_each=2), lambda p: Sophia(p, update_each=3, seed=2)),
    (lambda p: torch.optim.SGD(p, lr=0.1), lambda p: NewtonCG(p)),
]


@pytest.mark.parametrize("make_a, make_b", MEMBERS)
def test_composition_equals_separate_steps_on_a_separable_loss(make_a, make_b):
    a, b, fa, fb = separable_problem()
    a2, b2 = nn.Parameter(a.detach().clone()), nn.Parameter(b.detach().clone())
    calls = []

    def closure():
        calls.append(1)
        return fa() + fb()

    opt = BlockOptimizer([make_a([a]), make_b([b])])
    # the same members alone, with their own closures
    oa, ob = make_a([a2]), make_b([b2])

    for _ in range(4):
        calls.clear()
        loss = opt.step(closure)
        assert len(calls) == 1 or isinstance(opt.optimizers[1], NewtonCG)
        assert loss.grad_fn is None
        _step_alone(oa, lambda: fa(a2))
        _step_alone(ob, lambda: fb(b2))
        torch.testing.assert_close(a.detach(), a2.detach(), rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(b.detach(), b2.detach(), rtol=1e-9, atol=1e-12)
    for p in (a, b):
        assert p.grad.grad_fn is None


def _step_alone(opt, f):
    if isinstance(opt, _base.CurvatureOptimizer):
        opt.step(f)
    else:
        opt.zero_grad()
        f().backward()
        opt.step()


def test_one_closure_evaluation_and_graph_only_when_needed(monkeypatch):
    import curvlab.optim.blocks as comp

    flags = spy_on_take_gradient(monkeypatch, comp)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    X, y = torch.randn(32, 4), torch.randn(32, 1)
    calls = []

    def closure():
        calls.append(1)
        return F.mse_loss(model(X), y)

    opt = compose(
        torch.optim.Adam(model[0].parameters(), lr=1e-2),
        SSDH(model[2].parameters(), update_each=2),
    )
    for _ in range(4):
        opt.step(closure)
    assert len(calls) == 4
    assert flags == [True, False, True, False]


def test_study_a_matrix_factorization_adam_plus_gradreg():
    """min ||M - P Q||^2 + reg: Adam on P, gradreg on Q (the study's mixed run, done right)."""
    g = torch.Generator().manual_seed(42)
    Ms = torch.randn(5, 12, 12, generator=g)
    P = nn.Parameter(torch.randn(12, 3, generator=g) * 0.3)
    Q = nn.Parameter(torch.randn(3, 12, generator=g) * 0.3)

    def closure():
        return ((Ms - P @ Q) ** 2).sum((1, 2)).mean() + 0.01 * (P.pow(2).sum() + Q.pow(2).sum())

    adam = torch.optim.Adam([P], lr=0.1)
    newton = DampedNewton([Q], variant="gradreg", L=1.0)
    opt = BlockOptimizer([adam, newton])
    # without the regularizer the optimum is the rank-3 truncation of the mean matrix
    Mbar = Ms.mean(0)
    sv = torch.linalg.svdvals(Mbar)
    best = float((Ms - Mbar).pow(2).sum((1, 2)).mean() + sv[3:].pow(2).sum())
    l0 = float(closure().detach())
    for _ in range(30):
        opt.step(closure)
    assert float(closure().detach()) - best < 0.1 * (l0 - best)
    assert adam.state[P]["step"] == 30  # Adam really stepped P (the study's runs never did)


def test_lbfgs_member_gets_a_block_closure():
    a, b, fa, fb = separable_problem()
    opt = BlockOptimizer([torch.optim.LBFGS([a], max_iter=5), DampedNewton([b])])
    l0 = float((fa() + fb()).detach())
    for _ in range(3):
        opt.step(lambda: fa() + fb())
    assert float((fa() + fb()).detach()) < l0


def test_legacy_path_and_state_dict():
    a, b, fa, fb = separable_problem()
    opt = BlockOptimizer([AdaHessian([a], seed=0), torch.optim.SGD([b], lr=0.1)])
    with pytest.warns(_base.LegacyStepWarning):
        for _ in range(2):
            opt.zero_grad()
            (fa() + fb()).backward(create_graph=True)
            opt.step()
    assert a.grad.grad_fn is None and b.grad.grad_fn is None
    sd = copy.deepcopy(opt.state_dict())
    snap = (a.detach().clone(), b.detach().clone())
    for _ in range(2):
        opt.step(lambda: fa() + fb())
    after = (a.detach().clone(), b.detach().clone())
    with torch.no_grad():
        a.copy_(snap[0])
        b.copy_(snap[1])
    opt2 = BlockOptimizer([AdaHessian([a], seed=5), torch.optim.SGD([b], lr=0.1)])
    opt2.load_state_dict(sd)
    for _ in range(2):
        opt2.step(lambda: fa() + fb())
    assert torch.equal(a.detach(), after[0]) and torch.equal(b.detach(), after[1])
    assert len(opt2.param_groups) == 2


def test_bad_compositions_are_rejected():
    p = nn.Parameter(torch.ones(2))
    with pytest.raises(ValueError, match="disjoint"):
        BlockOptimizer([torch.optim.SGD([p], lr=0.1), AdaHessian([p])])
    with pytest.raises(ValueError, match="at least one"):
        BlockOptimizer([])
    with pytest.raises(TypeError, match="Optimizer"):
        BlockOptimizer([object()])
    opt = BlockOptimizer([AdaHessian([p])])
    with pytest.raises(ValueError, match="state_dict"):
        opt.load_state_dict({"optimizers": []})
    with pytest.raises(ValueError, match="scalar"):
        opt.step(lambda: p * p)
