"""Newton-CG / Hessian-free optimization with Levenberg-Marquardt damping."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .._autograd import vjp_batched
from .._checks import check_int, check_nonneg, check_positive
from .._params import flatten, flatten_batched, unflatten
from .._public import public_dir
from ..linalg.solve import cg
from ..operators.base import CurvatureOperator
from ._base import CurvatureOptimizer
from ._closure import ClosureError
from ._context import StepContext

__all__ = ["NewtonCG"]
__dir__ = public_dir(globals())

CURVATURES = ("hessian", "ggn")


class _GGNBlockOperator(CurvatureOperator):
    r""":math:`J^\top H_\ell J` on a parameter block, from a loss and an output with graphs."""

    def __init__(self, loss: Tensor, output: Tensor, params: Sequence[Tensor], *, reduce=None):
        params = list(params)
        self._reduce = reduce
        n = sum(p.numel() for p in params)
        super().__init__(n, params[0].dtype, params[0].device)
        self.params = params
        self._out = output
        (self._gl,) = torch.autograd.grad(loss, output, create_graph=True, retain_graph=True)
        # J v through the double-VJP trick: w(u) = J^T u is linear in u, and d<w, v>/du = J v.
        self._u = torch.zeros_like(output, requires_grad=True)
        w = torch.autograd.grad(
            output, params, grad_outputs=self._u, create_graph=True, allow_unused=True
        )
        self._w = [torch.zeros_like(p) if x is None else x for x, p in zip(w, params)]

    def _matmat(self, V: Tensor) -> Tensor:
        k = V.shape[1]
        # J V, then H_l (J V), then J^T (H_l J V): three vector-Jacobian products
        (jv,) = vjp_batched(self._w, [self._u], unflatten(V, self.params), k, retain_graph=True)
        (hjv,) = vjp_batched([self._gl], [self._out], [jv], k, retain_graph=True)
        out = flatten_batched(vjp_batched([self._out], self.params, [hjv], k, retain_graph=True), k)
        if self._reduce is not None:
            self._reduce([out])
        return out


class NewtonCG(CurvatureOptimizer):
    r"""Newton-CG (Hessian-free) with Levenberg-Marquardt damping and a backtracking line search.

    For each parameter group, truncated conjugate gradients solve

    .. math::

        (B + \lambda I)\, d = -g, \qquad B = H \text{ (Hessian) or } J^\top H_\ell J
        \text{ (generalized Gauss-Newton)},

    stopping at ``cg_max_iter`` iterations, at relative residual ``cg_tol``, or at a direction
    of negative curvature (keeping the iterate reached; :math:`-g` if none). The step
    :math:`s = \eta d` is then backtracked, :math:`\alpha \in \{1, \tfrac12, \dots\}`, until
    the Armijo condition :math:`f(\theta + \alpha s) \le f(\theta) + c\, \alpha\, g^\top s`
    holds (``max_backtracks`` halvings, else no move). The damping follows the reduction ratio
    of the full step against the quadratic model
    :math:`q(s) = g^\top s + \tfrac12 s^\top B s`:

    .. math::

        r = \frac{f(\theta + s) - f(\theta)}{q(s)}, \qquad
        \lambda \leftarrow \begin{cases} \tfrac32 \lambda & r < \tfrac14 \\
        \tfrac23 \lambda & r > \tfrac34 \\ \lambda & \text{otherwise} \end{cases}

    (Martens, 2010), with :math:`\lambda \ge` ``min_damping``. The closure is required (the
    line search re-evaluates it); with ``curvature="ggn"`` it must return ``(loss, output)``
    and the loss must depend on the parameters only through ``output`` (terms added on the
    parameters directly, such as an explicit L2 penalty, are left out of :math:`B`).

    Parameters
    ----------
    params
        Parameters or parameter groups (each group is one block, with its own damping).
    lr
        Step multiplier :math:`\eta` (default 1).
    curvature
        ``"hessian"`` (default) or ``"ggn"`` (alias ``"gauss-newton"``).
    damping
        Initial :math:`\lambda` (default 1).
    adapt_damping
        Apply the Levenberg-Marquardt rule (default ``True``).
    min_damping
        Lower bound on :math:`\lambda` (default ``1e-10``).
    cg_max_iter
        CG iterations per step (default 50).
    cg_tol
        CG relative residual tolerance (default ``1e-6``).
    line_search
        Backtrack with the Armijo condition (default ``True``).
    armijo_c, max_backtracks
        :math:`c` (default ``1e-4``) and the number of halvings (default 20).

    Attributes
    ----------
    last_info : dict
        For the last step: ``alpha``, ``ratio``, ``damping`` (per group, after adaptation),
        ``cg_iters`` (per group).

    References
    ----------
    J. Martens. "Deep learning via Hessian-free optimization". ICML 2010.
    J. Nocedal, S. J. Wright. *Numerical Optimization*, 2nd ed., Springer 2006, sec. 7.1.

    Examples
    --------
    >>> import torch
    >>> from curvlab.optim import NewtonCG
    >>> xy = torch.nn.Parameter(torch.tensor([-1.2, 1.0], dtype=torch.float64))
    >>> rosen = lambda: (1 - xy[0]) ** 2 + 100 * (xy[1] - xy[0] ** 2) ** 2
    >>> opt = NewtonCG([xy])
    >>> for _ in range(100):
    ...     loss = opt.step(rosen)
    >>> bool(torch.allclose(xy.detach(), torch.ones(2, dtype=torch.float64), atol=1e-6))
    True
    """

    requires_closure = True

    def __init__(
        self,
        params,
        lr: float = 1.0,
        *,
        curvature: str = "hessian",
        damping: float = 1.0,
        adapt_damping: bool = True,
        min_damping: float = 1e-10,
        cg_max_iter: int = 50,
        cg_tol: float = 1e-6,
        line_search: bool = True,
        armijo_c: float = 1e-4,
        max_backtracks: int = 20,
        seed: int | torch.Generator | None = 0,
        process_group=None,
        max_grad_norm: float | None = None,
    ):
        if isinstance(curvature, str) and curvature.lower() in ("gauss-newton", "gn"):
            curvature = "ggn"
        if curvature not in CURVATURES:
            raise ValueError(f"curvature must be one of {CURVATURES}, got {curvature!r}.")
        check_nonneg(min_damping, "min_damping")
        check_nonneg(armijo_c, "armijo_c")
        check_int(max_backtracks, "max_backtracks", minimum=0)
        self.curvature = curvature
        self.adapt_damping = bool(adapt_damping)
        self.min_damping = float(min_damping)
        self.line_search = bool(line_search)
        self.armijo_c = float(armijo_c)
        self.max_backtracks = max_backtracks
        self.uses_output = curvature == "ggn"
        defaults = dict(lr=lr, damping=damping, cg_max_iter=cg_max_iter, cg_tol=cg_tol)
        self.last_info: dict = {}
        super().__init__(
            params, defaults, seed=seed, process_group=process_group, max_grad_norm=max_grad_norm
        )

    def _check_group(self, group):
        check_nonneg(group["damping"], "damping")
        check_int(group["cg_max_iter"], "cg_max_iter")
        check_positive(group["cg_tol"], "cg_tol")
        group.setdefault("lm_damping", float(group["damping"]))

    def _needs_graph(self) -> bool:
        return self.curvature == "hessian"

    def _needs_output(self) -> bool:
        return self.curvature == "ggn"

    def _operator(self, ctx: StepContext, params):
        if self.curvature == "hessian":
            ctx.require_graph("NewtonCG")
            return ctx.operator(params)
        out = ctx.output
        if not isinstance(out, Tensor) or not out.requires_grad:
            raise ClosureError(
                "NewtonCG(curvature='ggn') needs the model output with its graph: make the "
                "closure return (loss, output)."
            )
        return ctx.track(_GGNBlockOperator(ctx.loss, out, params, reduce=ctx.reduce))

    def _prepare(self, ctx: StepContext):
        if ctx.loss is None:
            raise ClosureError("NewtonCG needs a closure: call opt.step(closure).")
        plan = []
        for group in self.param_groups:
            params = [p for p in group["params"] if ctx.has(p)]
            if not params:
                plan.append(None)
                continue
            g = flatten([ctx.grad_of(p).detach() for p in params])
            op = self._operator(ctx, params)
            lam = max(float(group["lm_damping"]), self.min_damping)
            res = cg(op, -g, damping=lam, tol=group["cg_tol"], max_iter=group["cg_max_iter"])
            d = res.x
            if res.indefinite and not bool(torch.any(d != 0)):
                d = -g
            with torch.no_grad():
                Bd = op @ d
            eta = float(group["lr"])
            gs = eta * float(g @ d)
            q = gs + 0.5 * eta * eta * float(d @ Bd)
            plan.append((params, unflatten(eta * d, params), gs, q, res.num_iter))
        return plan

    def _apply(self, ctx: StepContext, plan):
        items = [it for it in plan if it is not None]
        if not items:
            return
        # inside a BlockOptimizer, blocks stepped before this one moved: re-evaluate f there
        f0 = float(ctx.loss_value) if ctx.loss_is_current else float(ctx.closure())
        params = [p for it in items for p in it[0]]
        steps = [s for it in items for s in it[1]]
        gs = sum(it[2] for it in items)
        q = sum(it[3] for it in items)
        x0 = [p.detach().clone() for p in params]

        def set_at(alpha: float) -> float:
            for p, x, s in zip(params, x0, steps):
                p.copy_(x).add_(s, alpha=alpha)
            return float(ctx.closure())

        alpha, ratio = 1.0, None
        f1 = set_at(1.0)
        if q < 0:
            ratio = (f1 - f0) / q
        if self.line_search:
            f, tries = f1, 0
            while not (f <= f0 + self.armijo_c * alpha * gs) and tries < self.max_backtracks:
                alpha *= 0.5
                tries += 1
                f = set_at(alpha)
            if not f <= f0 + self.armijo_c * alpha * gs:
                alpha = 0.0
                for p, x in zip(params, x0):
                    p.copy_(x)
        if self.adapt_damping:
            for group, it in zip(self.param_groups, plan):
                if it is None:
                    continue
                lam = float(group["lm_damping"])
                if ratio is None or ratio < 0.25:
                    if ratio is not None or alpha == 0.0:
                        lam *= 1.5
                elif ratio > 0.75:
                    lam *= 2.0 / 3.0
                group["lm_damping"] = max(lam, self.min_damping)
        self.last_info = dict(
            alpha=alpha,
            ratio=ratio,
            damping=[g.get("lm_damping") for g in self.param_groups],
            cg_iters=[it[4] for it in items],
        )
