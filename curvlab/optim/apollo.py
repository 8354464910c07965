"""Apollo: a diagonal quasi-Newton method with a rectified curvature bound."""

from __future__ import annotations

import torch

from .._checks import check_beta, check_int, check_nonneg
from .._public import public_dir
from ._base import CurvatureOptimizer
from ._context import StepContext

__all__ = ["Apollo"]
__dir__ = public_dir(globals())

REBOUNDS = ("constant", "belief")
WEIGHT_DECAY_TYPES = ("L2", "decoupled", "stable")


def _warmup_start(init_lr: float, lr) -> float:
    """The warm-up's starting fraction of ``lr`` (1 for ``lr = 0``: nothing to warm up)."""
    lr = float(lr)
    return 1.0 if lr == 0 else float(init_lr) / lr


class Apollo(CurvatureOptimizer):
    r"""Apollo (Ma, 2020): diagonal quasi-Newton with a weak-secant update.

    With :math:`\alpha_t = (1-\beta)/(1-\beta^t)`, the previous direction :math:`d_{t-1}`
    and :math:`s = \lVert d_{t-1} \rVert_4 + \epsilon`, per parameter tensor:

    .. math::

        m_t &= m_{t-1} + \alpha_t (g_t - m_{t-1}), \qquad u = d_{t-1} / s, \\
        \delta &= -\frac{\alpha_t}{s} \langle g_t - m_{t-1}, u \rangle
            - \langle B_{t-1}, u \odot u \rangle, \qquad
        B_t = B_{t-1} + \delta\, u \odot u, \\
        D_t &= \max(|B_t|, \sigma), \qquad d_t = m_t / D_t, \qquad
        \theta_{t+1} = \theta_t - \eta_t\, d_t,

    as in the authors' code (:math:`B` is the diagonal quasi-Newton curvature, updated by the
    weak secant condition). The rectification bound :math:`\sigma` ("rebound") was 1 in the
    mid-2021 code and 0.01 in the later version; ``rebound="belief"`` uses
    :math:`\max(|B_t|, \lVert g_t - m_{t-1}\rVert_\infty) + \epsilon/\alpha_t` instead.

    Warm-up: over the first ``warmup`` steps of a parameter, its step size is the group's
    *current* ``lr`` times a factor that rises linearly from ``init_lr / lr`` to 1,

    .. math::

        \eta_t = \eta \left( r + (1 - r) \frac{t}{T_w} \right), \quad t < T_w, \qquad
        r = \frac{\text{init\_lr}}{\text{lr}},

    so that with the constructor's values it goes from ``init_lr`` to ``lr`` as in the
    authors' code, and it follows each group's ``lr``: a group with its own ``lr`` (and no
    ``init_lr`` of its own) keeps the ratio :math:`r` of the constructor's values (it does
    not start from the absolute ``init_lr``), and a learning-rate scheduler that changes
    ``lr`` scales the warm-up steps too. A group that sets its own ``init_lr`` uses the ratio
    of its own ``init_lr`` and ``lr``. The ratio is stored in the group as
    ``"warmup_start"`` (it is part of the ``state_dict``). ``warmup=0`` disables the
    warm-up (torch-optimizer's default).

    Parameters
    ----------
    params
        Parameters or parameter groups.
    lr
        Learning rate :math:`\eta` after warm-up (default 0.5, the study's value).
    beta
        Gradient averaging :math:`\beta` (default 0.9).
    eps
        :math:`\epsilon` (default ``1e-4``).
    sigma
        Rectification bound :math:`\sigma` (default 1.0; pass 0.01 for the later version).
    rebound
        ``"constant"`` (default, :math:`\sigma`) or ``"belief"``.
    warmup
        Warm-up steps :math:`T_w` (default 100, the authors' code; 0 disables).
    init_lr
        Initial learning rate of the warm-up for ``lr`` (default 0.01); a group with another
        ``lr`` starts from the same fraction ``init_lr / lr`` of its own ``lr``.
    weight_decay
        Weight decay (default 0).
    weight_decay_type
        ``"L2"`` (added to the gradient; default), ``"decoupled"`` (added to the direction) or
        ``"stable"`` (decoupled, divided by the mean of :math:`D_t`).

    References
    ----------
    X. Ma. "Apollo: An Adaptive Parameter-wise Diagonal Quasi-Newton Method for Nonconvex
    Stochastic Optimization". arXiv:2009.13586, 2020.

    Examples
    --------
    >>> import torch
    >>> from curvlab.optim import Apollo
    >>> model = torch.nn.Linear(3, 1)
    >>> X, y = torch.randn(16, 3), torch.randn(16, 1)
    >>> opt = Apollo(model.parameters(), lr=0.1, warmup=0)
    >>> loss = opt.step(lambda: torch.nn.functional.mse_loss(model(X), y))
    """

    hvp_free = True

    def __init__(
        self,
        params,
        lr: float = 0.5,
        beta: float = 0.9,
        eps: float = 1e-4,
        *,
        sigma: float = 1.0,
        rebound: str = "constant",
        warmup: int = 100,
        init_lr: float = 0.01,
        weight_decay: float = 0.0,
        weight_decay_type: str = "L2",
        seed: int | torch.Generator | None = 0,
        process_group=None,
        max_grad_norm: float | None = None,
    ):
        defaults = dict(
            lr=lr,
            beta=beta,
            eps=eps,
            sigma=sigma,
            rebound=rebound,
            warmup=warmup,
            init_lr=init_lr,
            weight_decay=weight_decay,
            weight_decay_type=weight_decay_type,
        )
        super().__init__(
            params, defaults, seed=seed, process_group=process_group, max_grad_norm=max_grad_norm
        )

    def add_param_group(self, param_group: dict) -> None:
        """Add a parameter group; its warm-up starts at ``init_lr / lr`` of its ``lr`` (the
        group's own ``init_lr`` and ``lr`` if it sets ``init_lr``, else the constructor's)."""
        if isinstance(param_group, dict) and "warmup_start" not in param_group:
            if "init_lr" in param_group:
                init, lr = param_group["init_lr"], param_group.get("lr", self.defaults["lr"])
            else:
                init, lr = self.defaults["init_lr"], self.defaults["lr"]
            check_nonneg(init, "init_lr")
            check_nonneg(lr, "lr", tensor_ok=True)
            param_group["warmup_start"] = _warmup_start(init, lr)
        super().add_param_group(param_group)

    def _check_group(self, group):
        check_beta(group["beta"], "beta")
        if "warmup_start" in group:
            check_nonneg(group["warmup_start"], "warmup_start")
        check_nonneg(group["eps"], "eps")
        check_nonneg(group["sigma"], "sigma")
        check_nonneg(group["init_lr"], "init_lr")
        check_nonneg(group["weight_decay"], "weight_decay")
        check_int(group["warmup"], "warmup", minimum=0)
        if group["rebound"] not in REBOUNDS:
            raise ValueError(f"rebound must be one of {REBOUNDS}, got {group['rebound']!r}.")
        if group["weight_decay_type"] not in WEIGHT_DECAY_TYPES:
            raise ValueError(
                f"weight_decay_type must be one of {WEIGHT_DECAY_TYPES}, "
                f"got {group['weight_decay_type']!r}."
            )

    def _needs_graph(self) -> bool:
        return False

    def _prepare(self, ctx: StepContext):
        return None

    def _apply(self, ctx: StepContext, plan):
        buffers = ("exp_avg_grad", "approx_hessian", "update")
        for group, p, state, _ in self._stepped_params(ctx, buffers=buffers):
            beta, eps, wd = group["beta"], group["eps"], group["weight_decay"]
            wd_type = group["weight_decay_type"]
            if state["step"] < group["warmup"]:
                r = group.get("warmup_start")
                if r is None:  # a state_dict saved before "warmup_start" existed
                    r = _warmup_start(group["init_lr"], group["lr"])
                lr = group["lr"] * (r + (1 - r) * state["step"] / group["warmup"])
            else:
                lr = group["lr"]
            grad = p.grad
            if wd != 0 and wd_type == "L2":
                grad = grad.add(p, alpha=wd)
            m, B, d_p = state["exp_avg_grad"], state["approx_hessian"], state["update"]
            state["step"] += 1
            alpha = (1 - beta) / (1 - beta ** state["step"])
            delta_grad = grad - m
            rebound = delta_grad.abs().max() if group["rebound"] == "belief" else group["sigma"]
            m.add_(delta_grad, alpha=alpha)
            denom = torch.linalg.vector_norm(d_p, ord=4).add(eps)
            d_p.div_(denom)
            v_sq = d_p * d_p
            delta = (delta_grad / denom * d_p).sum().mul(-alpha) - (B * v_sq).sum()
            B.addcmul_(v_sq, delta)
            if group["rebound"] == "belief":
                D = torch.maximum(B.abs(), rebound).add_(eps / alpha)
            else:
                D = B.abs().clamp_(min=rebound)
            d_p.copy_(m / D)
            if wd != 0 and wd_type != "L2":
                coef = wd / D.mean() if wd_type == "stable" else wd
                d_p.add_(p * coef)
            p.add_(d_p, alpha=-lr)
