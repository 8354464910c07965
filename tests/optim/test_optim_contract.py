"""The closure contract, the legacy path, state_dict, param groups, seeds, errors."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
from optim_problems import (
    FACTORIES,
    PERIODIC,
    logistic_problem,
    loss_of,
    mlp_problem,
    spy_on_take_gradient,
)
from torch import nn

import curvlab.optim as co
from curvlab.optim import (
    SADH,
    SCRN,
    SSDH,
    SSVP,
    AdaHessian,
    Apollo,
    ClosureError,
    DampedNewton,
    LegacyStepWarning,
    NewtonCG,
    Sophia,
)

ALL = list(FACTORIES)
# methods that accept the legacy path loss.backward(create_graph=True); opt.step()
LEGACY = [n for n in ALL if n not in ("NewtonCG", "NewtonCG-ggn", "Sophia-G")]


def fast_kwargs(name):
    return {"update_each": 3} if name in PERIODIC else {}


@pytest.mark.parametrize("name", ALL)
def test_defaults_reduce_the_loss_of_logistic_regression_and_a_digits_mlp(name):
    for problem in (logistic_problem, mlp_problem):
        if name == "DampedNewton-dense" and problem is mlp_problem:
            continue  # a dense 1194 x 1194 Hessian per step: covered on logistic regression
        model, closure = problem(n=128)
        opt = FACTORIES[name](model.parameters())
        l0 = loss_of(closure)
        for _ in range(20):
            loss = opt.step(closure)
            assert torch.isfinite(loss)
        assert loss_of(closure) < 0.95 * l0, (name, problem.__name__)


@pytest.mark.parametrize("name", ALL)
def test_closure_contract(name):
    model, closure = mlp_problem(n=64)
    params = list(model.parameters())
    opt = FACTORIES[name](params)
    for _ in range(2):
        loss_ref, _ = closure()
        grads_ref = torch.autograd.grad(loss_ref, params)
        loss = opt.step(closure)
        # the returned loss and p.grad are those at the point before the step, detached
        assert not loss.requires_grad and loss.grad_fn is None
        assert float(loss) == pytest.approx(float(loss_ref.detach()), rel=1e-6)
        for p, g in zip(params, grads_ref):
            assert p.grad is not None and p.grad.grad_fn is None and not p.grad.requires_grad
            torch.testing.assert_close(p.grad, g, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", LEGACY)
def test_legacy_path_matches_closure_path_and_warns_once(name):
    m1, c1 = logistic_problem()
    m2, c2 = logistic_problem()
    o1 = FACTORIES[name](m1.parameters(), seed=5, **fast_kwargs(name))
    o2 = FACTORIES[name](m2.parameters(), seed=5, **fast_kwargs(name))
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        for _ in range(4):
            o1.step(lambda: c1()[0])
            o2.zero_grad()
            c2()[0].backward(create_graph=True)
            o2.step()
            for p in m2.parameters():
                assert p.grad.grad_fn is None
    legacy = [w for w in rec if issubclass(w.category, LegacyStepWarning)]
    assert len(legacy) == (0 if name == "Apollo" else 1)
    # the warning points at the user's opt.step() line, not into curvlab or torch.optim
    assert all(w.filename == __file__ for w in legacy)
    for a, b in zip(m1.parameters(), m2.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ALL)
def test_state_dict_resume_is_bit_for_bit(name):
    model, closure = mlp_problem(n=64, hidden=4)
    opt = FACTORIES[name](model.parameters(), seed=1, **fast_kwargs(name))
    for _ in range(4):
        opt.step(closure)
    saved_model = copy.deepcopy(model.state_dict())
    saved_opt = copy.deepcopy(opt.state_dict())
    for _ in range(4):
        opt.step(closure)
    expected = [p.detach().clone() for p in model.parameters()]

    model2, closure2 = mlp_problem(n=64, seed=7, hidden=4)
    model2.load_state_dict(saved_model)
    opt2 = FACTORIES[name](model2.parameters(), seed=999, **fast_kwargs(name))
    opt2.load_state_dict(saved_opt)
    for _ in range(4):
        opt2.step(closure2)
    for a, b in zip(expected, model2.parameters()):
        assert torch.equal(a, b.detach())


@pytest.mark.parametrize("name", ALL)
def test_param_groups_have_their_own_hyperparameters(name):
    model, closure = mlp_problem(n=64)
    frozen = {"params": model[2].parameters(), "lr": 0.0}
    if name == "Apollo":
        frozen["warmup"] = 0
    opt = FACTORIES[name]([{"params": model[0].parameters()}, frozen])
    before0 = model[0].weight.detach().clone()
    before2 = [p.detach().clone() for p in model[2].parameters()]
    for _ in range(3):
        opt.step(closure)
    assert not torch.equal(model[0].weight.detach(), before0)
    for a, b in zip(before2, model[2].parameters()):
        assert torch.equal(a, b.detach())


STOCHASTIC = ["AdaHessian", "Sophia-H", "Sophia-G", "SSDH", "SADH", "SCRN", "SCRN-lanczos"]


@pytest.mark.parametrize("name", STOCHASTIC)
def test_seeded_reproducibility_and_global_rng_untouched(name):
    def run(seed):
        model, closure = mlp_problem(n=64)
        kw = {"l": 3.0} if name.startswith("SCRN") else {"update_each": 1}  # perturbed branch
        opt = FACTORIES[name](model.parameters(), seed=seed, **kw)
        for _ in range(3):
            opt.step(closure)
        return torch.cat([p.detach().reshape(-1) for p in model.parameters()]), opt

    state = torch.random.get_rng_state()
    a, opt = run(11)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert opt.seed == 11
    b, _ = run(11)
    c, _ = run(12)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_seed_accepts_a_generator_and_none():
    p = [nn.Parameter(torch.ones(3))]
    gen = torch.Generator().manual_seed(42)
    assert AdaHessian(p, seed=gen).seed == 42
    opt = AdaHessian(p, seed=None)
    assert isinstance(opt.seed, int)


@pytest.mark.parametrize(
    "make, pattern",
    [
        (lambda p: AdaHessian(p, update_each=3), [True, False, False, True, False]),
        (lambda p: Sophia(p), [True, False, False, False, False]),
        (lambda p: Sophia(p, estimator="gnb"), [False] * 5),
        (lambda p: SSDH(p, update_each=2), [True, False, True, False, True]),
        (lambda p: SSVP(p, update_each=2), [True, False, True, False, True]),
        (lambda p: Apollo(p), [False] * 5),
        (
            lambda p: DampedNewton(p, solver="dense", update_each=2),
            [True, False, True, False, True],
        ),
        (lambda p: NewtonCG(p, curvature="ggn"), [False] * 5),
        (lambda p: SCRN(p), [True] * 5),
    ],
)
def test_double_backward_graph_only_on_curvature_steps(monkeypatch, make, pattern):
    flags = spy_on_take_gradient(monkeypatch)
    model, closure = logistic_problem()
    opt = make(model.parameters())
    for _ in range(len(pattern)):
        opt.step(closure)
    assert flags == pattern


def test_dense_newton_reuses_its_hessian_between_refreshes():
    g = torch.Generator().manual_seed(0)
    C = torch.randn(8, 4, generator=g, dtype=torch.float64)
    x = nn.Parameter(torch.zeros(4, dtype=torch.float64))
    f = lambda: torch.logsumexp(C @ x, 0) + 0.5 * x @ x  # noqa: E731
    opt = DampedNewton([x], variant="classic", solver="dense", update_each=2)
    opt.step(f)
    H0 = opt.state[x]["dense_hessian"].clone()
    x1 = x.detach().clone()
    opt.step(f)  # uses H0, not the Hessian at x1
    xx = x1.clone().requires_grad_(True)
    grad = torch.autograd.grad(torch.logsumexp(C @ xx, 0) + 0.5 * xx @ xx, xx)[0]
    torch.testing.assert_close(x.detach(), x1 - torch.linalg.solve(H0, grad))
    H1 = torch.func.hessian(lambda v: torch.logsumexp(C @ v, 0) + 0.5 * v @ v)(x1)
    assert not torch.allclose(H0, H1)


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_negative_lr_is_rejected(name):
    with pytest.raises(ValueError, match="lr"):
        FACTORIES[name]([nn.Parameter(torch.ones(2))], lr=-0.1)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda p: DampedNewton(p, variant="fixed", damping=-1.0), "damping"),
        (lambda p: NewtonCG(p, damping=-1.0), "damping"),
        (lambda p: DampedNewton(p, L=-1.0), "L"),
        (lambda p: DampedNewton(p, variant="newton"), "variant"),
        (lambda p: DampedNewton(p, solver="lu"), "solver"),
        (lambda p: DampedNewton(p, update_each=2), "dense"),
        (lambda p: AdaHessian(p, hessian_power=1.5), "hessian_power"),
        (lambda p: AdaHessian(p, betas=(0.9, 1.0)), "betas"),
        (lambda p: AdaHessian(p, update_each=0), "update_each"),
        (lambda p: Sophia(p, estimator="fisher"), "estimator"),
        (lambda p: Sophia(p, rho=0.0), "rho"),
        (lambda p: SCRN(p, rho=-1.0), "rho"),
        (lambda p: SCRN(p, subsolver="newton"), "subsolver"),
        (lambda p: NewtonCG(p, curvature="fisher"), "curvature"),
        (lambda p: Apollo(p, rebound="none"), "rebound"),
        (lambda p: SADH(p, eps=-1.0), "eps"),
        (lambda p: AdaHessian(p, seed="x"), "seed"),
    ],
)
def test_bad_hyperparameters_are_rejected(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make([nn.Parameter(torch.ones(2))])


def test_bad_group_hyperparameters_are_rejected():
    p, q = nn.Parameter(torch.ones(2)), nn.Parameter(torch.ones(2))
    with pytest.raises(ValueError, match="damping"):
        DampedNewton([{"params": [p]}, {"params": [q], "damping": -1.0}], variant="fixed")
    opt = AdaHessian([p])
    with pytest.raises(ValueError, match="lr"):
        opt.add_param_group({"params": [q], "lr": -1.0})


@pytest.mark.parametrize("name", ALL)
def test_closure_returning_a_non_scalar_is_rejected(name):
    w = nn.Parameter(torch.ones(3))
    opt = FACTORIES[name]([w])
    with pytest.raises(ValueError, match="scalar"):
        opt.step(lambda: w * w)
    with pytest.raises(TypeError, match="tensor"):
        opt.step(lambda: float((w * w).sum().detach()))


def test_closure_that_calls_backward_is_rejected_with_a_clear_message():
    w = nn.Parameter(torch.ones(3))
    opt = AdaHessian([w])

    def closure():
        loss = (w**4).sum()
        loss.backward()
        return loss

    with pytest.raises(ClosureError, match="WITHOUT calling loss.backward"):
        opt.step(closure)


def test_missing_closure_where_the_method_needs_one():
    model, closure = logistic_problem()
    for opt in (NewtonCG(model.parameters()), Sophia(model.parameters(), estimator="gnb")):
        closure()[0].backward()
        with pytest.raises(ValueError, match="closure"):
            opt.step()
    opt = NewtonCG(model.parameters(), curvature="ggn")
    with pytest.raises(ValueError, match="output"):
        opt.step(lambda: closure()[0])


@pytest.mark.parametrize("make", [AdaHessian, SSDH, SCRN, DampedNewton, Sophia])
def test_legacy_path_without_create_graph_is_rejected(make):
    model, closure = logistic_problem()
    opt = make(model.parameters())
    closure()[0].backward()
    with pytest.warns(LegacyStepWarning), pytest.raises(RuntimeError, match="create_graph=True"):
        opt.step()


def test_public_names():
    names = "AdaHessian Sophia SCRN DampedNewton NewtonCG Apollo SSDH SADH SSVP BlockOptimizer"
    for name in [*names.split(), "compose"]:
        assert name in co.__all__ and hasattr(co, name)
    assert issubclass(co.AdaHessian, torch.optim.Optimizer)


def test_every_optimizer_runs_in_a_plain_training_loop_with_minibatches():
    """Opt(model.parameters()) works out of the box in an ordinary loop."""
    X = torch.randn(64, 5)
    y = (X[:, 0] > 0).long()
    for name in ALL:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 2))
        opt = FACTORIES[name](model.parameters())
        for i in range(4):
            xb, yb = X[16 * i : 16 * (i + 1)], y[16 * i : 16 * (i + 1)]

            def closure(xb=xb, yb=yb, model=model):
                out = model(xb)
                return F.cross_entropy(out, yb), out

            loss = opt.step(closure)
            assert torch.isfinite(loss), name


def test_work_counters():
    model, closure = logistic_problem()
    opt = AdaHessian(model.parameters(), update_each=2)
    for _ in range(4):
        opt.step(closure)
    assert opt.counts == {"steps": 4, "loss_evals": 4, "gradients": 4, "hvps": 2}
    assert opt.gradient_equivalents() == 4 + 2 * 2
    opt = AdaHessian(model.parameters(), n_samples=3)
    opt.step(closure)
    assert opt.counts["hvps"] == 3
    opt = DampedNewton(model.parameters(), solver="dense")
    opt.step(closure)
    assert opt.counts["hvps"] == 65  # one product per column of the 65 x 65 block
    opt = NewtonCG(model.parameters(), cg_max_iter=3, line_search=True)
    opt.step(closure)
    c = opt.counts
    assert c["hvps"] == opt.last_info["cg_iters"][0] + 1  # CG, then B d for the model
    assert c["loss_evals"] >= 2  # the closure, then at least one trial point
    assert opt.gradient_equivalents(loss_cost=0.0) == 1 + 2 * c["hvps"]
    opt = Sophia(model.parameters(), estimator="gnb")
    opt.step(closure)
    assert opt.counts["gradients"] == 2 and opt.counts["hvps"] == 0
