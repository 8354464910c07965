"""Damped Newton steps on a parameter block: gradreg, classic, AIC and fixed damping."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._checks import check_int, check_nonneg, check_positive
from .._public import public_dir
from ..linalg.solve import cg
from ._base import GroupStepOptimizer
from ._context import StepContext

__all__ = ["DampedNewton"]
__dir__ = public_dir(globals())

VARIANTS = ("gradreg", "classic", "aic", "fixed")
SOLVERS = ("cg", "dense")


def default_cg_tol(dtype: torch.dtype) -> float:
    return 1e-10 if dtype == torch.float64 else 1e-5


class DampedNewton(GroupStepOptimizer):
    r"""Damped Newton step on each parameter group: :math:`x \leftarrow x - \alpha (H +
    \lambda I)^{-1} g`.

    Each parameter group is one block: :math:`H` is the Hessian block of the group's
    parameters (the curvature between groups is ignored), :math:`g` its gradient. Variants:

    ``"gradreg"`` (Mishchenko, 2023)
        :math:`\lambda = \sqrt{L \lVert g \rVert}`, :math:`\alpha = 1`: global
        :math:`O(1/k^2)` convergence for convex functions with an :math:`L`-Lipschitz Hessian.
    ``"classic"``
        :math:`\lambda = 0`, :math:`\alpha` = ``lr``.
    ``"aic"`` (Hanzely et al., 2022, affine-invariant cubic Newton)
        :math:`\lambda = 0`, :math:`\alpha = (\sqrt{1 + 2G} - 1)/G` with
        :math:`G = L \sqrt{g^\top H^{-1} g}` (the absolute value is taken if
        :math:`g^\top H^{-1} g < 0`).
    ``"fixed"``
        :math:`\lambda` = ``damping``, :math:`\alpha` = ``lr``.

    ``lr`` multiplies every variant's :math:`\alpha` (1 reproduces the published rules).

    Parameters
    ----------
    params
        Parameters or parameter groups (one block each; e.g. only the last layer).
    lr
        Step multiplier :math:`\alpha` (default 1).
    variant
        One of ``"gradreg"`` (default), ``"classic"``, ``"aic"``, ``"fixed"``.
    L
        Hessian-Lipschitz estimate for ``"gradreg"`` and ``"aic"`` (default 1).
    damping
        :math:`\lambda` for ``"fixed"`` (default ``1e-3``).
    solver
        ``"cg"`` (default): conjugate gradients on Hessian-vector products
        (``curvlab.cg``); ``"dense"``: materialize the block Hessian (``n``
        products, batched) and solve with :func:`torch.linalg.solve`, for small blocks.
    cg_tol, cg_max_iter
        CG relative residual tolerance (default ``1e-10`` in float64, ``1e-5`` otherwise) and
        iteration cap (default ``min(n, 100)``). If CG meets negative curvature it keeps the
        iterate reached so far, and the gradient itself if that is zero.
    update_each
        With ``solver="dense"``, rebuild the Hessian every ``update_each`` steps and reuse it
        in between (steps in between take no double-backward graph). Must be 1 with CG.
    alpha, lam
        Aliases of ``lr`` and ``damping`` (the names of study A).

    Attributes
    ----------
    last_info : list of dict
        Per group, for the last step: ``damping`` (:math:`\lambda`), ``alpha``,
        ``cg_iters``, ``cg_converged``, ``indefinite``.

    References
    ----------
    K. Mishchenko. "Regularized Newton Method with Global O(1/k^2) Convergence". SIAM J.
    Optim. 33(3), 2023. arXiv:2112.02089.
    S. Hanzely, D. Kamzolov, D. Pasechnyuk, A. Gasnikov, P. Richtarik, M. Takac. "A Damped
    Newton Method Achieves Global O(1/k^2) and Local Quadratic Convergence Rate". NeurIPS
    2022. arXiv:2211.00140.

    Examples
    --------
    >>> import torch
    >>> from curvlab.optim import DampedNewton
    >>> A = torch.tensor([[3.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
    >>> x = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    >>> b = torch.tensor([1.0, 1.0], dtype=torch.float64)
    >>> opt = DampedNewton([x], variant="classic")
    >>> loss = opt.step(lambda: 0.5 * x @ A @ x - b @ x)
    >>> torch.allclose(x.detach(), torch.linalg.solve(A, b))
    True
    """

    def __init__(
        self,
        params,
        lr: float = 1.0,
        *,
        variant: str = "gradreg",
        L: float = 1.0,
        damping: float = 1e-3,
        solver: str = "cg",
        cg_tol: float | None = None,
        cg_max_iter: int | None = None,
        update_each: int = 1,
        alpha: float | None = None,
        lam: float | None = None,
        seed: int | torch.Generator | None = 0,
        process_group=None,
        max_grad_norm: float | None = None,
    ):
        check_int(update_each, "update_each")
        if alpha is not None:
            lr = alpha
        if lam is not None:
            damping = lam
        self.update_each = update_each
        defaults = dict(
            lr=lr,
            variant=variant,
            L=L,
            damping=damping,
            solver=solver,
            cg_tol=cg_tol,
            cg_max_iter=cg_max_iter,
        )
        super().__init__(
            params, defaults, seed=seed, process_group=process_group, max_grad_norm=max_grad_norm
        )

    def _check_group(self, group):
        if group["variant"] not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {group['variant']!r}.")
        if group["solver"] not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}, got {group['solver']!r}.")
        check_nonneg(group["damping"], "damping")
        if group["variant"] in ("gradreg", "aic"):
            check_positive(group["L"], "L")
        else:
            check_nonneg(group["L"], "L")
        if group["cg_tol"] is not None:
            check_positive(group["cg_tol"], "cg_tol")
        if group["cg_max_iter"] is not None:
            check_int(group["cg_max_iter"], "cg_max_iter")
        if self.update_each > 1 and group["solver"] != "dense":
            raise ValueError(
                "update_each > 1 reuses a dense Hessian: use solver='dense', or update_each=1."
            )

    def _cached(self, group) -> Tensor | None:
        first = group["params"][0]
        return self.state[first].get("dense_hessian") if first in self.state else None

    def _refresh(self) -> bool:
        return self._num_steps % self.update_each == 0

    def _needs_graph(self) -> bool:
        if self._refresh():
            return True
        return any(g["solver"] != "dense" or self._cached(g) is None for g in self.param_groups)

    def _group_step(self, ctx: StepContext, group: dict, params: list[Tensor], g: Tensor):
        variant = group["variant"]
        lam = 0.0
        if variant == "gradreg":
            lam = math.sqrt(group["L"] * float(torch.linalg.vector_norm(g)))
        elif variant == "fixed":
            lam = float(group["damping"])
        d, stats = self._solve(ctx, group, params, g, lam)
        alpha = float(group["lr"])
        if variant == "aic":
            gHg = abs(float(g @ d))
            G = group["L"] * math.sqrt(gHg)
            alpha *= (math.sqrt(1 + 2 * G) - 1) / G if G > 0 else 1.0
        return -alpha * d, dict(damping=lam, alpha=alpha, **stats)

    def _solve(self, ctx, group, params, g, lam):
        n = g.numel()
        if group["solver"] == "dense":
            H = None if self._refresh() else self._cached(group)
            if H is None or H.shape[0] != n:
                ctx.require_graph("DampedNewton")
                H = ctx.dense_hessian(params)
                if self.update_each > 1:
                    self.state[params[0]]["dense_hessian"] = H.detach()
            A = H + lam * torch.eye(n, dtype=H.dtype, device=H.device)
            d, info = torch.linalg.solve_ex(A, g)
            if int(info) != 0:  # singular: least-squares solution
                d = torch.linalg.lstsq(A, g[:, None]).solution[:, 0]
            return d, dict(cg_iters=0, cg_converged=True, indefinite=False)
        ctx.require_graph("DampedNewton")
        op = ctx.operator(params)
        tol = group["cg_tol"] if group["cg_tol"] is not None else default_cg_tol(g.dtype)
        max_iter = group["cg_max_iter"] if group["cg_max_iter"] is not None else min(n, 100)
        res = cg(op, g, damping=lam, tol=tol, max_iter=max_iter)
        d = res.x
        if res.indefinite and not bool(torch.any(d != 0)):
            d = g.clone()
        return d, dict(cg_iters=res.num_iter, cg_converged=res.converged, indefinite=res.indefinite)
