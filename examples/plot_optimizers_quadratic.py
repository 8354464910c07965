r"""
Second-order optimizers on an ill-conditioned quadratic and on Rosenbrock
=========================================================================

Every optimizer of ``curvlab.optim`` runs on two classic test functions: a quadratic
:math:`f(x) = \tfrac12 (x - x^\star)^\top A (x - x^\star)` in 20 dimensions whose Hessian
:math:`A` has eigenvalues spread log-uniformly over :math:`[1, 10^3]` in a random basis
(condition number 1000), and the Rosenbrock function
:math:`f(x, y) = (1 - x)^2 + 100 (y - x^2)^2` from the usual start :math:`(-1.2, 1)`.
SGD and Adam are the first-order baselines.

Two x-axes tell different stories. Per *step*, the Newton-type methods win by far, but a step
of Newton-CG costs many Hessian-vector products. Per *gradient-equivalent* (one gradient = one
forward and one backward pass; a Hessian-vector product counts two, a loss-only evaluation of
a line search one half), the comparison is fairer: every curvlab optimizer counts its own work
in ``opt.counts`` and converts it with ``opt.gradient_equivalents()``.
"""

# %%
# The two problems
# ----------------
# Both are written as closures over one parameter tensor: the closure returns the loss and
# never calls ``backward``; curvlab's optimizers take the gradient (and the Hessian-vector
# products) themselves.
import matplotlib.pyplot as plt
import numpy as np
import torch

from curvlab.optim import (
    SADH,
    SCRN,
    SSDH,
    SSVP,
    AdaHessian,
    Apollo,
    CurvatureOptimizer,
    DampedNewton,
    NewtonCG,
    Sophia,
)
from curvlab.optim import step as optim_step

n = 20
gen = torch.Generator().manual_seed(0)
Q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
A = Q @ torch.diag(torch.logspace(0, 3, n, dtype=torch.float64)) @ Q.T
x_star = torch.randn(n, generator=gen, dtype=torch.float64)


def quadratic(x):
    d = x - x_star
    return 0.5 * d @ A @ d


def rosenbrock(x):
    return (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2


problems = {
    "ill-conditioned quadratic (cond 1000)": (quadratic, torch.zeros(n, dtype=torch.float64)),
    "Rosenbrock": (rosenbrock, torch.tensor([-1.2, 1.0], dtype=torch.float64)),
}

# %%
# The optimizers
# --------------
# Each entry builds an optimizer for one problem: ``L`` is the largest curvature (1000 for the
# quadratic, about 1000 for Rosenbrock near its valley), which fixes SGD's step ``1/L`` and
# SCRN's gradient-Lipschitz constant ``l``. The diagonal methods (AdaHessian, Sophia, the
# step-size family of study B, Apollo) have a learning rate chosen by hand from a few values;
# the Newton-type methods run with their defaults. Curvature is refreshed on every step.


def make(name, params, problem):
    quad = problem.startswith("ill")
    if name == "SGD":
        return torch.optim.SGD(params, lr=1e-3)
    if name == "Adam":
        return torch.optim.Adam(params, lr=0.05 if quad else 0.02)
    if name == "AdaHessian":
        return AdaHessian(params, lr=1.0 if quad else 0.5)
    if name == "Sophia-H":
        return Sophia(params, lr=0.02, weight_decay=0.0, update_each=1)
    if name in ("SSDH", "SADH", "SSVP"):
        cls = {"SSDH": SSDH, "SADH": SADH, "SSVP": SSVP}[name]
        return cls(params, lr=0.5, rho=0.1, update_each=1)
    if name == "Apollo":
        return Apollo(params, lr=0.01 if quad else 1e-3, warmup=0)
    if name == "SCRN (GD subsolver)":
        return SCRN(params, rho=1.0, l=1000.0, inner_steps=10)
    if name == "SCRN (Lanczos)":
        return SCRN(params, rho=1.0, l=1000.0, subsolver="lanczos")
    if name == "DampedNewton (gradreg)":
        return DampedNewton(params, variant="gradreg", L=1.0)
    if name == "NewtonCG":
        return NewtonCG(params)
    raise ValueError(name)


names = [
    "SGD", "Adam", "AdaHessian", "Sophia-H", "SSDH", "SADH", "SSVP", "Apollo",
    "SCRN (GD subsolver)", "SCRN (Lanczos)", "DampedNewton (gradreg)", "NewtonCG",
]  # fmt: skip

# %%
# Running them
# ------------
# First-order baselines step in the ordinary way (``backward`` then ``step``) and cost one
# gradient per step; the curvlab optimizers take ``step(closure)``.

steps = {"ill-conditioned quadratic (cond 1000)": 150, "Rosenbrock": 200}
results = {}
for problem, (f, x0) in problems.items():
    for name in names:
        x = torch.nn.Parameter(x0.clone())
        opt = make(name, [x], problem)
        losses, costs = [float(f(x).detach())], [0.0]
        for _ in range(steps[problem]):
            optim_step(opt, lambda f=f, x=x: f(x))  # curvlab's closure contract, any optimizer
            if isinstance(opt, CurvatureOptimizer):
                cost = opt.gradient_equivalents()
            else:
                cost = costs[-1] + 1.0
            losses.append(float(f(x).detach()))
            costs.append(cost)
        results[problem, name] = (np.array(losses), np.array(costs))
        print(f"{problem[:10]:10s} {name:24s} final f = {losses[-1]:.2e}  cost = {costs[-1]:.0f}")

# %%
# Loss against steps and against cost
# ------------------------------------
# Twelve curves in one panel cannot be told apart, so each figure has one column per family:
# the diagonal methods, the step-size family of study B and the Newton-type methods, each
# drawn against the same two first-order baselines (SGD and Adam, grey and dashed). The
# minimum of both functions is 0, so the y-axis is the suboptimality on a log scale (clipped
# at :math:`10^{-16}`). The first figure counts steps; the second counts cost, on a
# logarithmic axis since the methods' costs per step differ by two orders of magnitude.

families = {
    "diagonal curvature": ["AdaHessian", "Sophia-H", "Apollo"],
    "step-size family (study B)": ["SSDH", "SADH", "SSVP"],
    "Newton-type": ["SCRN (GD subsolver)", "SCRN (Lanczos)", "DampedNewton (gradreg)", "NewtonCG"],
}
baselines = {"SGD": "0.2", "Adam": "0.6"}
palette = plt.get_cmap("tab10").colors  # one palette: the i-th method of a family is colour i


def draw(per_cost: bool):
    fig, axes = plt.subplots(2, 3, figsize=(11, 7.5), sharey="row", sharex=not per_cost)
    for row, problem in enumerate(problems):
        for col, (family, members) in enumerate(families.items()):
            ax = axes[row, col]
            curves = [(m, palette[i], "-", 1.8) for i, m in enumerate(members)]
            curves += [(m, c, "--", 1.2) for m, c in baselines.items()]
            for name, color, style, width in curves:
                losses, costs = results[problem, name]
                losses = np.clip(np.nan_to_num(losses, nan=1e10), 1e-16, 1e10)
                x = costs[1:] if per_cost else np.arange(1, len(losses))
                ax.plot(x, losses[1:], style, color=color, lw=width, label=name)
            ax.set_yscale("log")
            if per_cost:
                ax.set_xscale("log")
            if row == 0:
                ax.set_title(family, fontsize=10)
            if col == 0:
                ax.set_ylabel(f"{problem}\nf(x) - f*")
            if row == 1:
                ax.set_xlabel("gradient equivalents" if per_cost else "step")
                # the legend below the panels, outside the data
                ax.legend(
                    loc="upper center",
                    bbox_to_anchor=(0.5, -0.2),
                    fontsize=8,
                    ncol=2,
                    frameon=False,
                )
    if per_cost:
        fig.suptitle(
            "cost: one gradient = 1, a Hessian-vector product = 2, a loss-only evaluation = 0.5",
            fontsize=9,
        )
    fig.tight_layout()
    return fig


draw(per_cost=False)

# %%
# The same runs against their cost.

draw(per_cost=True)

# %%
# What the figure shows
# ---------------------
# On the quadratic, the Newton-type methods (gradreg's damped Newton and Newton-CG) reach
# machine precision after a handful of steps, because a Newton step solves a quadratic exactly;
# their cost is the conjugate-gradient iterations (up to 20 products per step). SCRN with its
# Lanczos subsolver minimizes the cubic model over a Krylov space and converges as well, down
# to a floor set by its perturbation: below :math:`\lVert g \rVert < l^2/\rho` SCRN adds
# :math:`\sigma \zeta` with :math:`\sigma = c' \sqrt{\epsilon \rho} / l` to the gradient on
# purpose, which is what lets it leave saddle points. The gradient-descent subsolver of the
# paper, with inner step :math:`1/(20 l)`, crawls on an ill-conditioned problem.
#
# The diagonal methods only see the Hessian's diagonal, which is not the Hessian here (the
# eigenbasis is a random rotation): they behave like well-tuned adaptive first-order methods,
# SSVP's product along the momentum's sign being the most informative of the family. On
# Rosenbrock, the line search and the Levenberg-Marquardt damping of Newton-CG, and gradreg's
# damping :math:`\sqrt{L \lVert g \rVert}`, carry Newton's method along the curved valley;
# the diagonal methods and the first-order baselines make slow progress along it.
