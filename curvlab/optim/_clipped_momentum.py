r"""The clipped, diagonally preconditioned momentum update of Sophia and the step-size family.

Per parameter, with a curvature sample :math:`s` on the steps that refresh it (every
``update_each`` steps, the first one included):

.. math::

    m \leftarrow \beta_1 m + (1 - \beta_1) g, \qquad
    v \leftarrow \beta_2 v + (1 - \beta_2)\, \mathrm{stat}(s), \qquad
    u = \mathrm{clip}\!\left(\frac{m}{\mathrm{den}(v)}, b\right), \qquad
    \theta \leftarrow \theta (1 - \eta\lambda) - \eta\, u,

from zero, without bias correction, the clip being element-wise to :math:`[-b, b]`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._checks import check_betas, check_int, check_nonneg, check_positive
from ._base import CurvatureOptimizer
from ._context import StepContext

__all__ = ["ClippedMomentumOptimizer"]


class ClippedMomentumOptimizer(CurvatureOptimizer):
    r"""Base class of :class:`~curvlab.optim.Sophia` and
    :class:`~curvlab.optim.StepSizeOptimizer`: the update of the module docstring.

    Groups hold ``lr``, ``betas``, ``rho``, ``weight_decay`` and ``eps``. Subclasses give the
    curvature sample (``_prepare``, one tensor per ``ctx.params`` on refresh steps, else
    ``None``), :meth:`_statistic`, :meth:`_update_denominator`, :meth:`_clip_bound` and the
    state names of :math:`m` and :math:`v` (``_buffers``). The fraction of coordinates
    clipped at the last step is :meth:`clip_rate`.
    """

    #: state names of the momentum m and of the curvature average v
    _buffers: tuple[str, str] = ("momentum", "curvature")

    def __init__(
        self,
        params,
        lr: float,
        betas: tuple[float, float],
        rho: float,
        weight_decay: float,
        *,
        eps: float,
        update_each: int,
        seed: int | torch.Generator | None,
        process_group,
        max_grad_norm: float | None = None,
    ):
        check_int(update_each, "update_each")
        self.update_each = update_each
        defaults = dict(lr=lr, betas=betas, rho=rho, weight_decay=weight_decay, eps=eps)
        super().__init__(
            params, defaults, seed=seed, process_group=process_group, max_grad_norm=max_grad_norm
        )

    def _check_group(self, group):
        check_betas(group["betas"], "betas")
        check_positive(group["rho"], "rho")
        check_nonneg(group["weight_decay"], "weight_decay")
        check_nonneg(group["eps"], "eps")

    def _refresh(self) -> bool:
        return self._num_steps % self.update_each == 0

    def _statistic(self, s: Tensor) -> Tensor:
        """The statistic of a curvature sample that is averaged into :math:`v`."""
        return s

    def _update_denominator(self, v: Tensor, group: dict) -> Tensor:  # pragma: no cover
        r""":math:`\mathrm{den}(v)` (a new tensor) for a parameter of ``group``."""
        raise NotImplementedError

    def _clip_bound(self, group: dict) -> float | None:  # pragma: no cover
        """The clip bound :math:`b` of ``group``, or ``None`` for no clipping."""
        raise NotImplementedError

    def _apply(self, ctx: StepContext, plan):
        momentum, curvature = self._buffers
        for group, p, state, sample in self._stepped_params(ctx, plan, buffers=self._buffers):
            beta1, beta2 = group["betas"]
            lr, wd = group["lr"], group["weight_decay"]
            state["step"] += 1
            m = state[momentum]
            m.mul_(beta1).add_(p.grad, alpha=1 - beta1)
            if sample is not None:
                state[curvature].mul_(beta2).add_(self._statistic(sample), alpha=1 - beta2)
            update = m / self._update_denominator(state[curvature], group)
            bound = self._clip_bound(group)
            if bound is not None:
                unclipped = update
                update = update.clamp(-bound, bound)
                state["clip_rate"] = (unclipped != update).float().mean()
            if wd != 0:
                p.mul_(1 - lr * wd)
            p.add_(update, alpha=-lr)

    def clip_rate(self) -> float:
        """Fraction of coordinates clipped at the last step (0 before the first step, and
        without clipping)."""
        num, den = 0.0, 0
        for group in self.param_groups:
            for p in group["params"]:
                st = self.state.get(p, {})
                if "clip_rate" in st:
                    num += float(st["clip_rate"]) * p.numel()
                    den += p.numel()
        return num / den if den else 0.0
