"""Small problems and factories shared by the optimizer tests."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from curvlab.optim import (
    SADH,
    SCRN,
    SSDH,
    SSVP,
    AdaHessian,
    Apollo,
    DampedNewton,
    NewtonCG,
    Sophia,
    _base,
)

# name -> factory(params, **overrides); the defaults of each optimizer unless stated
FACTORIES = {
    "AdaHessian": lambda p, **kw: AdaHessian(p, **kw),
    "AdaHessian-torch_optimizer": lambda p, **kw: AdaHessian.torch_optimizer(p, **kw),
    "Sophia-H": lambda p, **kw: Sophia(p, **kw),
    "Sophia-G": lambda p, **kw: Sophia(p, estimator="gnb", **kw),
    "SCRN": lambda p, **kw: SCRN(p, **kw),
    "SCRN-lanczos": lambda p, **kw: SCRN(p, subsolver="lanczos", **kw),
    "DampedNewton": lambda p, **kw: DampedNewton(p, **kw),
    "DampedNewton-dense": lambda p, **kw: DampedNewton(p, solver="dense", **kw),
    "NewtonCG": lambda p, **kw: NewtonCG(p, **kw),
    "NewtonCG-ggn": lambda p, **kw: NewtonCG(p, curvature="ggn", **kw),
    "Apollo": lambda p, **kw: Apollo(p, **kw),
    "SSDH": lambda p, **kw: SSDH(p, **kw),
    "SADH": lambda p, **kw: SADH(p, **kw),
    "SSVP": lambda p, **kw: SSVP(p, **kw),
}

# optimizers whose refresh period can be shortened for the tests
PERIODIC = {
    "AdaHessian",
    "AdaHessian-torch_optimizer",
    "Sophia-H",
    "Sophia-G",
    "SSDH",
    "SADH",
    "SSVP",
}


@functools.lru_cache(maxsize=1)
def _digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    return torch.tensor(d.data, dtype=torch.float32) / 16.0, torch.tensor(d.target)


def digits(n: int = 300):
    """The first n scikit-learn digits (8x8, in [0, 1]) and their labels."""
    X, y = _digits()
    return X[:n].clone(), y[:n].clone()


def logistic_problem(seed: int = 0, n: int = 200):
    """Binary logistic regression (digit < 5) on the digits; closure returns (loss, logits)."""
    X, y = digits(n)
    yb = (y < 5).to(X.dtype)
    torch.manual_seed(seed)
    model = nn.Linear(64, 1)

    def closure():
        out = model(X).squeeze(-1)
        return F.binary_cross_entropy_with_logits(out, yb), out

    return model, closure


def mlp_problem(seed: int = 0, n: int = 200, hidden: int = 16):
    """A 64-hidden-10 tanh MLP on the digits (cross-entropy); closure returns (loss, logits)."""
    X, y = digits(n)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, hidden), nn.Tanh(), nn.Linear(hidden, 10))

    def closure():
        out = model(X)
        return F.cross_entropy(out, y), out

    return model, closure


def loss_of(closure) -> float:
    with torch.no_grad():
        return float(closure()[0])


def spy_on_take_gradient(monkeypatch, *modules) -> list[bool]:
    """Record ``create_graph`` of every gradient taken through ``curvlab.optim._base``'s
    ``take_gradient`` (and through the ``take_gradient`` imported by ``modules``)."""
    flags: list[bool] = []
    real = _base.take_gradient

    def spy(loss, params, *, create_graph):
        flags.append(create_graph)
        return real(loss, params, create_graph=create_graph)

    for module in (_base, *modules):
        monkeypatch.setattr(module, "take_gradient", spy)
    return flags
