"""AdaHessian: Adam with a Hutchinson estimate of the Hessian diagonal."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._checks import check_betas, check_int, check_nonneg, check_real
from .._public import public_dir
from .._random import rademacher_like
from ._base import CurvatureOptimizer
from ._context import StepContext, hutchinson_diagonal

__all__ = ["AdaHessian"]

__dir__ = public_dir(globals())


def spatial_average(d: Tensor) -> Tensor:
    """Average ``|d|`` over the spatial dimensions of a convolution kernel.

    A tensor of rank >= 3 is read as a kernel ``(out, in, *spatial)`` and ``|d|`` is averaged
    over ``dims 2:`` (kept for broadcasting): the 3x3 block of a ``Conv2d`` kernel as in the
    official implementation, the kernel width of a ``Conv1d`` (rank 3) and the three spatial
    dimensions of a ``Conv3d`` (rank 5). Ranks 0 to 2 are returned as ``|d|``.
    """
    a = d.abs()
    if d.dim() >= 3:
        return a.mean(dim=tuple(range(2, d.dim())), keepdim=True)
    return a


class AdaHessian(CurvatureOptimizer):
    r"""AdaHessian (Yao et al., 2021): Adam with a Hutchinson Hessian diagonal.

    With a Rademacher probe :math:`z` the Hutchinson diagonal is
    :math:`D = z \odot (H z)` (exact when :math:`H` is diagonal); on convolution kernels
    :math:`|D|` is averaged over the spatial dimensions. With :math:`\beta_1, \beta_2`,
    the bias corrections :math:`b_i = 1 - \beta_i^t` and the Hessian power :math:`k`:

    .. math::

        m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g_t, \qquad
        v_t = \beta_2 v_{t-1} + (1 - \beta_2) D_t \odot D_t, \\
        \theta_{t+1} &= \theta_t - \eta \left( \frac{m_t / b_1}
            {\left(\sqrt{v_t} / \sqrt{b_2}\right)^{k} + \epsilon}
            + \lambda \theta_t \right),

    the weight decay :math:`\lambda` being decoupled (AdamW-style), as in the official code.

    Parameters
    ----------
    params
        Parameters or parameter groups.
    lr
        Learning rate :math:`\eta` (default 0.15, the official default).
    betas
        :math:`(\beta_1, \beta_2)` (default ``(0.9, 0.999)``).
    eps
        :math:`\epsilon` added to the denominator (default ``1e-4``).
    weight_decay
        Decoupled weight decay :math:`\lambda` (default 0).
    hessian_power
        :math:`k \in [0, 1]` (default 1, the official implementation; torch-optimizer uses 0.5).
    spatial_average
        Average :math:`|D|` over the spatial dimensions of parameters of rank >= 3 (default
        ``True``). Rank 4 (``Conv2d``) matches the official code; rank 3 (``Conv1d``) and 5
        (``Conv3d``) are averaged over their spatial dimensions ``2:`` likewise (the official
        code and torch-optimizer crash on them). ``False``: the element-wise ``|D|``.
    n_samples
        Rademacher probes per refresh, averaged (default 1); several probes are computed in
        one batched double-backward.
    update_each
        Refresh the Hessian estimate every ``update_each`` steps (default 1). Between
        refreshes the step builds no double-backward graph and :math:`v` is left as it is;
        :math:`b_2` counts refreshes.
    seed
        Seed of the probe generator (int, :class:`torch.Generator`, or ``None``).

    Notes
    -----
    Presets: :meth:`official` (``lr=0.15, hessian_power=1``, the authors' code) and
    :meth:`torch_optimizer` (``lr=0.15, hessian_power=0.5``, ``torch_optimizer.Adahessian``).

    References
    ----------
    Z. Yao, A. Gholami, S. Shen, M. Mustafa, K. Keutzer, M. W. Mahoney. "ADAHESSIAN: An
    Adaptive Second Order Optimizer for Machine Learning". AAAI 2021. arXiv:2006.00719.

    Examples
    --------
    >>> import torch
    >>> from curvlab.optim import AdaHessian
    >>> model = torch.nn.Linear(3, 1)
    >>> X, y = torch.randn(16, 3), torch.randn(16, 1)
    >>> opt = AdaHessian(model.parameters(), lr=0.1)
    >>> closure = lambda: torch.nn.functional.mse_loss(model(X), y)
    >>> loss = opt.step(closure)
    >>> model.weight.grad.grad_fn is None
    True
    """

    def __init__(
        self,
        params,
        lr: float = 0.15,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-4,
        weight_decay: float = 0.0,
        hessian_power: float = 1.0,
        *,
        spatial_average: bool = True,
        n_samples: int = 1,
        update_each: int = 1,
        seed: int | torch.Generator | None = 0,
        process_group=None,
        max_grad_norm: float | None = None,
    ):
        check_int(n_samples, "n_samples")
        check_int(update_each, "update_each")
        self.n_samples = n_samples
        self.update_each = update_each
        self.spatial_average = bool(spatial_average)
        defaults = dict(
            lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, hessian_power=hessian_power
        )
        super().__init__(
            params, defaults, seed=seed, process_group=process_group, max_grad_norm=max_grad_norm
        )

    @classmethod
    def official(cls, params, **kwargs) -> AdaHessian:
        """The official implementation's defaults: ``lr=0.15``, ``hessian_power=1``."""
        kwargs.setdefault("lr", 0.15)
        kwargs.setdefault("hessian_power", 1.0)
        return cls(params, **kwargs)

    @classmethod
    def torch_optimizer(cls, params, **kwargs) -> AdaHessian:
        """torch-optimizer's ``Adahessian`` defaults: ``lr=0.15``, ``hessian_power=0.5``."""
        kwargs.setdefault("lr", 0.15)
        kwargs.setdefault("hessian_power", 0.5)
        return cls(params, **kwargs)

    def _check_group(self, group):
        check_betas(group["betas"], "betas")
        check_nonneg(group["eps"], "eps")
        check_nonneg(group["weight_decay"], "weight_decay")
        k = check_real(group["hessian_power"], "hessian_power")
        if not 0.0 <= k <= 1.0:
            raise ValueError(f"hessian_power must be in [0, 1], got {k!r}.")

    def _needs_graph(self) -> bool:
        if self._num_steps % self.update_each == 0:
            return True
        # a parameter without an estimate yet (e.g. a group added later) forces a refresh
        return any(self.state[p].get("hessian_step", 0) == 0 for p in self._own_params())

    def _prepare(self, ctx: StepContext):
        if not self._needs_graph():
            return None
        ctx.require_graph("AdaHessian")
        params = ctx.params
        if self.n_samples == 1:
            diags = hutchinson_diagonal(ctx, params, self._generator)
        else:
            zs = rademacher_like(params, self._generator, self.n_samples)
            hzs = ctx.hvp_batched(params, zs)
            diags = [(z * hz).mean(0) for z, hz in zip(zs, hzs)]
        if self.spatial_average:
            return [spatial_average(d) for d in diags]
        return [d.abs() for d in diags]

    def _apply(self, ctx: StepContext, plan):
        counters, buffers = ("step", "hessian_step"), ("exp_avg", "exp_hessian_diag_sq")
        for group, p, state, d in self._stepped_params(
            ctx, plan, counters=counters, buffers=buffers
        ):
            beta1, beta2 = group["betas"]
            lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
            k = group["hessian_power"]
            grad = p.grad
            state["step"] += 1
            exp_avg, exp_h = state["exp_avg"], state["exp_hessian_diag_sq"]
            exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
            if d is not None:
                state["hessian_step"] += 1
                exp_h.mul_(beta2).addcmul_(d, d, value=1 - beta2)
            bc1 = 1 - beta1 ** state["step"]
            bc2 = 1 - beta2 ** state["hessian_step"]
            if k == 1:
                denom = exp_h.sqrt().div_(math.sqrt(bc2)).add_(eps)
            else:
                denom = (exp_h.sqrt() ** k).div_(math.sqrt(bc2) ** k).add_(eps)
            update = exp_avg / bc1 / denom
            if wd != 0:
                update = update + wd * p
            p.add_(update, alpha=-lr)
