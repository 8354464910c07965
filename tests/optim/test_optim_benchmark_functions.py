"""torch-optimizer's benchmark functions (its tests/test_basic.py), for every curvlab optimizer.

The functions, the start (1.5, 1.5), the float32 parameters, the minimizers and the tolerance
(``atol=1e-3``) are torch-optimizer's: Rosenbrock with coefficient 1 (minimum at (1, 1)), a
quadratic (minimum at (0, 0)) and Beale (minimum at (3, 0.5)). torch-optimizer tunes
settings for its own optimizers; of curvlab's methods it has only AdaHessian
(``lr=0.15, hessian_power=0.6, seed=0``, 900 iterations), used here as is. The settings of
the other methods were chosen by hand on these three functions (a small grid; recorded
here, not tuned per function): methods whose default suits neural networks (Sophia's
``update_each=10``, Apollo's ``lr=0.5``) get the values that converge on a 2-D problem.
Apollo diverges on Beale (NaN) for ``lr >= 0.05`` and needs 2000 iterations at ``lr=0.01``.
"""

from __future__ import annotations

import pytest
import torch

from curvlab.optim import SADH, SCRN, SSDH, SSVP, AdaHessian, Apollo, DampedNewton, NewtonCG, Sophia


def rosenbrock(t):
    x, y = t
    return (1 - x) ** 2 + 1 * (y - x**2) ** 2


def quadratic(t):
    x, y = t
    return x**2 + y**2


def beale(t):
    x, y = t
    return (1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2 + (2.625 - x + x * y**3) ** 2


CASES = [(rosenbrock, (1.0, 1.0)), (quadratic, (0.0, 0.0)), (beale, (3.0, 0.5))]

# (optimizer, kwargs, iterations); the first row is torch-optimizer's own
SETTINGS = [
    (AdaHessian, {"lr": 0.15, "hessian_power": 0.6, "seed": 0}, 900),
    (Sophia, {"lr": 0.01, "rho": 0.04, "weight_decay": 0.0, "update_each": 1}, 900),
    (SCRN, {"rho": 1.0, "l": 10.0}, 900),
    (DampedNewton, {"variant": "gradreg", "L": 1.0}, 900),
    (NewtonCG, {}, 900),
    (Apollo, {"lr": 0.01, "warmup": 0}, 2000),
    (SSDH, {"lr": 0.5, "rho": 0.05, "update_each": 1}, 900),
    (SADH, {"lr": 0.5, "rho": 0.05, "update_each": 1}, 900),
    (SSVP, {"lr": 0.1, "rho": 0.05, "update_each": 1}, 900),
]


@pytest.mark.parametrize("func, minimizer", CASES, ids=[c[0].__name__ for c in CASES])
@pytest.mark.parametrize("cls, kwargs, iterations", SETTINGS, ids=[s[0].__name__ for s in SETTINGS])
def test_benchmark_function(func, minimizer, cls, kwargs, iterations):
    x = torch.tensor([1.5, 1.5]).requires_grad_(True)
    opt = cls([x], **kwargs)
    for _ in range(iterations):
        opt.step(lambda: func(x))
    assert torch.allclose(x.detach(), torch.tensor(minimizer), atol=1e-3), x
    assert cls.__name__ in repr(opt)
