"""curvlab.optim.step (one helper for both step contracts) and Apollo's warm-up."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from curvlab.optim import AdaHessian, Apollo, BlockOptimizer, DampedNewton, step


def _problem(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 1))
    g = torch.Generator().manual_seed(1)
    X, y = torch.randn(32, 4, generator=g), torch.randn(32, 1, generator=g)
    return model, X, y


@pytest.mark.parametrize(
    "make",
    [
        lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9),
        lambda ps: torch.optim.Adam(ps, lr=1e-2),
    ],
    ids=["SGD", "Adam"],
)
def test_step_on_a_torch_optimizer_equals_backward_then_step(make):
    a, X, y = _problem()
    b, _, _ = _problem()
    opt_a, opt_b = make(a.parameters()), make(b.parameters())
    for _ in range(5):
        loss_a = step(opt_a, lambda: F.mse_loss(a(X), y))
        opt_b.zero_grad()
        loss_b = F.mse_loss(b(X), y)
        loss_b.backward()
        opt_b.step()
        assert torch.equal(loss_a, loss_b.detach()) and not loss_a.requires_grad
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


def test_step_on_lbfgs_equals_its_backward_closure():
    a, X, y = _problem()
    b, _, _ = _problem()
    opt_a = torch.optim.LBFGS(a.parameters(), lr=0.5, max_iter=5)
    opt_b = torch.optim.LBFGS(b.parameters(), lr=0.5, max_iter=5)

    def closure_b():
        opt_b.zero_grad()
        loss = F.mse_loss(b(X), y)
        loss.backward()
        return loss

    for _ in range(3):
        step(opt_a, lambda: (F.mse_loss(a(X), y), None))  # (loss, output) is accepted too
        opt_b.step(closure_b)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


def test_step_on_curvlab_and_block_optimizers_is_their_closure_step():
    a, X, y = _problem()
    b, _, _ = _problem()
    opt_a, opt_b = AdaHessian(a.parameters(), seed=4), AdaHessian(b.parameters(), seed=4)
    for _ in range(3):
        la = step(opt_a, lambda: F.mse_loss(a(X), y))
        lb = opt_b.step(lambda: F.mse_loss(b(X), y))
        assert torch.equal(la, lb)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    blocks = BlockOptimizer(
        [torch.optim.SGD(a[0].parameters(), lr=0.1), DampedNewton(a[2].parameters())]
    )
    w0 = a[2].weight.detach().clone()
    assert torch.isfinite(step(blocks, lambda: F.mse_loss(a(X), y)))
    assert not torch.equal(a[2].weight, w0)


def test_step_leaves_the_gradients_of_other_tensors_alone():
    model, X, y = _problem()
    other = model[2].weight
    sentinel = torch.full_like(other, 7.0)
    other.grad = sentinel
    opt = torch.optim.SGD(model[0].parameters(), lr=0.1)
    for _ in range(2):
        step(opt, lambda: F.mse_loss(model(X), y))
    assert other.grad is sentinel  # no backward into parameters the optimizer does not own


def test_step_rejects_what_is_not_an_optimizer_and_bad_closures():
    model, X, y = _problem()
    with pytest.raises(TypeError, match="torch.optim.Optimizer"):
        step(object(), lambda: F.mse_loss(model(X), y))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="scalar"):
        step(opt, lambda: (model(X) - y).pow(2))


def test_step_on_a_frozen_torch_optimizer_returns_the_loss():
    model, X, y = _problem()
    for p in model.parameters():
        p.requires_grad_(False)
    before = [p.clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = step(opt, lambda: F.mse_loss(model(X), y))
    assert float(loss) == float(F.mse_loss(model(X), y))
    for p, q in zip(model.parameters(), before):
        assert torch.equal(p, q)


# -- Apollo's warm-up ---------------------------------------------------------------------------


def _apollo_closure(p):
    return lambda: 0.5 * 3.0 * (p * p).sum()


def test_apollo_warmup_follows_a_group_with_its_own_lr():
    """The issue's case: a group with lr=1e-28 moved by 0.085 in 20 steps (the warm-up
    started from the absolute init_lr=0.01); now its steps are of order 1e-28."""
    p = nn.Parameter(torch.tensor([2.0], dtype=torch.float64))
    q = nn.Parameter(torch.tensor([2.0], dtype=torch.float64))
    opt = Apollo([{"params": [p]}, {"params": [q], "lr": 1e-28}])  # warmup=100 by default
    for _ in range(20):
        opt.step(lambda: 1.5 * (p * p).sum() + 1.5 * (q * q).sum())
    assert abs(float(q) - 2.0) < 1e-25
    assert abs(float(p) - 2.0) > 1e-2
    assert opt.param_groups[1]["warmup_start"] == pytest.approx(0.01 / 0.5)


def test_apollo_warmup_first_step_by_hand():
    """f = 1.5 w^2 at w = 2: g = 6, first step moves by lr * r * g / sigma (D = sigma = 1),
    r = init_lr / lr of the constructor, applied to the group's own lr."""
    p = nn.Parameter(torch.tensor([2.0], dtype=torch.float64))
    q = nn.Parameter(torch.tensor([2.0], dtype=torch.float64))
    opt = Apollo([{"params": [p]}, {"params": [q], "lr": 0.1}], lr=0.5, init_lr=0.01, warmup=10)
    opt.step(lambda: 1.5 * (p * p).sum() + 1.5 * (q * q).sum())
    assert float(p) == pytest.approx(2.0 - 0.01 * 6.0, rel=1e-12)
    assert float(q) == pytest.approx(2.0 - 0.1 * 0.02 * 6.0, rel=1e-12)
    # a group with its own init_lr warms up from it
    r = nn.Parameter(torch.tensor([2.0], dtype=torch.float64))
    opt2 = Apollo([{"params": [r], "lr": 0.2, "init_lr": 0.05}], warmup=10)
    opt2.step(lambda: 1.5 * (r * r).sum())
    assert float(r) == pytest.approx(2.0 - 0.05 * 6.0, rel=1e-12)


def test_apollo_warmup_follows_the_scheduler_from_the_first_step():
    """A scheduler's value at step 0 now matters: LambdaLR with factor 0 freezes the first
    step (before, the warm-up's absolute init_lr moved it anyway)."""
    p = nn.Parameter(torch.tensor([2.0], dtype=torch.float64))
    opt = Apollo([p], warmup=100)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.0 if t == 0 else 1.0)
    opt.step(_apollo_closure(p))
    assert float(p) == 2.0
    sched.step()
    opt.step(_apollo_closure(p))
    assert float(p) != 2.0


def test_apollo_state_dict_keeps_the_warmup_start():
    p = nn.Parameter(torch.ones(2))
    opt = Apollo([{"params": [p], "lr": 0.1}])
    sd = opt.state_dict()
    assert sd["param_groups"][0]["warmup_start"] == pytest.approx(0.02)
    opt2 = Apollo([nn.Parameter(torch.ones(2))], lr=0.3)
    opt2.load_state_dict(sd)
    assert opt2.param_groups[0]["warmup_start"] == pytest.approx(0.02)
