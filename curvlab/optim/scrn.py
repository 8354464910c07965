"""Stochastic cubic-regularized Newton (Tripuraneni et al., 2018)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._checks import check_int, check_nonneg, check_positive
from .._public import public_dir
from .._random import randn_flat
from ._base import GroupStepOptimizer
from ._context import StepContext

__all__ = ["SCRN", "cauchy_step", "solve_tridiagonal_cubic"]
__dir__ = public_dir(globals())

SUBSOLVERS = ("gd", "lanczos")


def cauchy_step(g: Tensor, gHg: Tensor | float, rho: float) -> Tensor:
    r"""The Cauchy step of the cubic model: the minimizer along :math:`-g`.

    :math:`\Delta = -R_c\, g / \lVert g \rVert`,
    :math:`R_c = -\frac{g^\top H g}{\rho \lVert g\rVert^2} + \sqrt{\left(\frac{g^\top H g}
    {\rho \lVert g \rVert^2}\right)^2 + \frac{2 \lVert g \rVert}{\rho}}`.
    """
    gnorm = torch.linalg.vector_norm(g)
    a = gHg / (rho * gnorm**2)
    rc = -a + torch.sqrt(a * a + 2 * gnorm / rho)
    return -rc * g / gnorm


def solve_tridiagonal_cubic(
    T: Tensor, bnorm: Tensor | float, rho: float, *, iters: int = 100
) -> Tensor:
    r"""Minimize :math:`\beta e_1^\top z + \tfrac12 z^\top T z + \tfrac{\rho}{6}\lVert z\rVert^3`.

    The minimizer is :math:`z = -(T + \lambda I)^{-1} \beta e_1` with :math:`\lambda =
    \tfrac{\rho}{2}\lVert z \rVert \ge \max(0, -\theta_{\min}(T))`; :math:`\lambda` is found
    by bisection on the secular equation (fixed ``iters``, no host round trip). The "hard
    case" (:math:`e_1` orthogonal to the bottom eigenvector) is not handled: the perturbed
    start vector of ``SCRN`` makes it a null event.
    """
    dtype = T.dtype
    T64 = T.to(torch.float64)
    theta, U = torch.linalg.eigh(T64)
    beta = U[0, :] * torch.as_tensor(bnorm, dtype=torch.float64, device=T.device)
    lo = torch.clamp(-theta[0], min=0.0)
    bn = torch.linalg.vector_norm(beta)
    hi = lo + torch.sqrt(rho * bn / 2) + 1e-30
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        znorm = torch.linalg.vector_norm(beta / (theta + mid))
        too_small = znorm > 2 * mid / rho  # phi(mid) > 0: lambda is larger
        lo = torch.where(too_small, mid, lo)
        hi = torch.where(too_small, hi, mid)
    lam = hi
    z = -U @ (beta / (theta + lam))
    return z.to(dtype)


class SCRN(GroupStepOptimizer):
    r"""Stochastic cubic-regularized Newton (Tripuraneni et al., 2018, Algorithms 1-2).

    Each step approximately minimizes the cubic model :math:`m(\Delta) = g^\top \Delta +
    \tfrac12 \Delta^\top H \Delta + \tfrac{\rho}{6}\lVert \Delta \rVert^3` of each parameter
    group and moves :math:`x \leftarrow x + \eta_{\text{lr}} \Delta` (``lr=1`` is the paper):

    - if :math:`\lVert g \rVert \ge l^2/\rho`, the Cauchy step
      :math:`\Delta = -R_c\, g/\lVert g\rVert`,
      :math:`R_c = -\frac{g^\top H g}{\rho\lVert g\rVert^2} + \sqrt{\left(\frac{g^\top H g}
      {\rho\lVert g\rVert^2}\right)^2 + \frac{2\lVert g\rVert}{\rho}}`;
    - otherwise the perturbed gradient-descent subsolver: :math:`\tilde g = g + \sigma\zeta`
      with :math:`\zeta` uniform on the unit sphere, :math:`\sigma = c'\sqrt{\epsilon\rho}/l`,
      :math:`\Delta_0 = 0` and ``inner_steps`` iterations of

      .. math::

          \Delta \leftarrow \Delta - \eta\left(\tilde g + H\Delta + \tfrac{\rho}{2}
          \lVert\Delta\rVert \Delta\right), \qquad \eta = \frac{1}{20 l}.

    With ``subsolver="lanczos"`` the second branch instead minimizes the cubic model (with
    :math:`\tilde g`) exactly over the Krylov space :math:`\mathcal K_k(H, \tilde g)`
    (``krylov_dim`` Lanczos steps with full reorthogonalization, then the secular equation
    of the tridiagonal model, ``curvlab.optim.scrn.solve_tridiagonal_cubic``).

    The study's original code drew :math:`\zeta` from :math:`[0, 1)^d` and ignored its step
    size; curvlab follows the paper.

    Parameters
    ----------
    params
        Parameters or parameter groups (each group is one cubic model).
    lr
        Multiplier of :math:`\Delta` (default 1, the paper).
    rho
        Hessian-Lipschitz constant :math:`\rho` (default 1).
    l
        Gradient-Lipschitz constant :math:`l` (default 1).
    eps
        Target accuracy :math:`\epsilon` in :math:`\sigma` (default ``1e-3``).
    c_prime
        Constant :math:`c'` in :math:`\sigma` (default 1).
    inner_steps
        Gradient-descent subsolver iterations (default 10; one Hessian-vector product each).
    subsolver
        ``"gd"`` (default) or ``"lanczos"`` (alias ``"krylov"``).
    krylov_dim
        Lanczos steps for ``subsolver="lanczos"`` (default 10).
    seed
        Seed of the perturbation generator.

    Attributes
    ----------
    last_info : list of dict
        Per group, for the last step: ``cauchy`` (bool), ``model_decrease``
        (:math:`m(\Delta)` for the Cauchy and Lanczos steps, ``None`` for the gradient-descent
        subsolver, which would need one more product), ``hvps``.

    References
    ----------
    N. Tripuraneni, M. Stern, C. Jin, J. Regier, M. I. Jordan. "Stochastic Cubic
    Regularization for Fast Nonconvex Optimization". NeurIPS 2018. arXiv:1711.02838.

    Examples
    --------
    >>> import torch
    >>> from curvlab.optim import SCRN
    >>> p = torch.nn.Parameter(torch.tensor([1.0, 0.0]))
    >>> f = lambda: p[0] ** 2 - p[1] ** 2 + p[1] ** 4 / 4
    >>> opt = SCRN([p], rho=1.0, l=2.0)
    >>> for _ in range(60):
    ...     loss = opt.step(f)
    >>> bool(abs(p[1]) > 1.0)  # left the saddle at the origin
    True
    """

    def __init__(
        self,
        params,
        lr: float = 1.0,
        *,
        rho: float = 1.0,
        l: float = 1.0,  # noqa: E741
        eps: float = 1e-3,
        c_prime: float = 1.0,
        inner_steps: int = 10,
        subsolver: str = "gd",
        krylov_dim: int = 10,
        seed: int | torch.Generator | None = 0,
        process_group=None,
        max_grad_norm: float | None = None,
    ):
        if subsolver == "krylov":
            subsolver = "lanczos"
        defaults = dict(
            lr=lr,
            rho=rho,
            l=l,
            eps=eps,
            c_prime=c_prime,
            inner_steps=inner_steps,
            subsolver=subsolver,
            krylov_dim=krylov_dim,
        )
        super().__init__(
            params, defaults, seed=seed, process_group=process_group, max_grad_norm=max_grad_norm
        )

    def _check_group(self, group):
        check_positive(group["rho"], "rho")
        check_positive(group["l"], "l")
        check_nonneg(group["eps"], "eps")
        check_nonneg(group["c_prime"], "c_prime")
        check_int(group["inner_steps"], "inner_steps", minimum=0)
        check_int(group["krylov_dim"], "krylov_dim")
        if group["subsolver"] == "krylov":
            group["subsolver"] = "lanczos"
        if group["subsolver"] not in SUBSOLVERS:
            raise ValueError(f"subsolver must be one of {SUBSOLVERS}, got {group['subsolver']!r}.")

    def _prepare(self, ctx: StepContext):
        ctx.require_graph("SCRN")
        return super()._prepare(ctx)

    def _group_step(self, ctx: StepContext, group: dict, params: list[Tensor], g: Tensor):
        op = ctx.operator(params)

        def H(v):
            return op @ v

        delta, stats = self._subsolve(group, g, H)
        stats["hvps"] = op.num_matvecs
        return group["lr"] * delta, stats

    def _subsolve(self, group, g: Tensor, H):
        rho, l = group["rho"], group["l"]  # noqa: E741
        gnorm = float(torch.linalg.vector_norm(g))
        n = g.numel()
        if gnorm >= l * l / rho:
            with torch.no_grad():
                gHg = g @ H(g)
                delta = cauchy_step(g, gHg, rho)
                r = torch.linalg.vector_norm(delta)
                # m(delta) along -g/||g||: -r ||g|| + r^2 gHg / (2 ||g||^2) + rho r^3 / 6
                dec = -r * gnorm + 0.5 * r * r * gHg / gnorm**2 + rho / 6 * r**3
            return delta, {"cauchy": True, "model_decrease": float(dec)}
        sigma = group["c_prime"] * math.sqrt(group["eps"] * rho) / l
        zeta = randn_flat(n, self._generator, g)
        zeta = zeta / torch.linalg.vector_norm(zeta)
        gt = g + sigma * zeta
        if group["subsolver"] == "lanczos":
            delta, dec = self._lanczos(gt, H, rho, min(group["krylov_dim"], n))
            return delta, {"cauchy": False, "model_decrease": float(dec)}
        eta = 1.0 / (20.0 * l)
        delta = torch.zeros_like(g)
        with torch.no_grad():
            for t in range(group["inner_steps"]):
                Hd = H(delta) if t > 0 else torch.zeros_like(g)
                delta = delta - eta * (gt + Hd + rho / 2 * delta.norm() * delta)
        if not bool(torch.isfinite(delta).all()):
            raise ValueError(
                "SCRN's gradient-descent subsolver diverged (non-finite step): its inner step "
                f"1/(20 l) = {eta:g} is too large here; l must bound the norm of the Hessian. "
                "Increase l, or use subsolver='lanczos'."
            )
        return delta, {"cauchy": False, "model_decrease": None}

    @staticmethod
    @torch.no_grad()
    def _lanczos(b: Tensor, H, rho: float, k: int) -> Tensor:
        bnorm = torch.linalg.vector_norm(b)
        Q = [b / bnorm]
        alphas, betas = [], []
        for j in range(k):
            w = H(Q[j])
            a = Q[j] @ w
            alphas.append(a)
            w = w - a * Q[j] - (betas[-1] * Q[j - 1] if j > 0 else 0)
            Qm = torch.stack(Q, dim=1)
            w = w - Qm @ (Qm.T @ w)  # full reorthogonalization
            beta = torch.linalg.vector_norm(w)
            if j == k - 1 or float(beta) <= 1e-10 * float(bnorm + abs(a)):
                break
            betas.append(beta)
            Q.append(w / beta)
        m = len(alphas)
        T = torch.diag(torch.stack(alphas))
        if m > 1:
            off = torch.stack(betas[: m - 1])
            T = T + torch.diag(off, 1) + torch.diag(off, -1)
        z = solve_tridiagonal_cubic(T, bnorm, rho)
        dec = bnorm * z[0] + 0.5 * z @ (T @ z) + rho / 6 * torch.linalg.vector_norm(z) ** 3
        return torch.stack(Q[:m], dim=1) @ z, dec
