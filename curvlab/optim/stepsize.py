"""The step-size adaptation family of study B: SSDH, SADH and SSVP.

All three share one skeleton: momentum :math:`m_t = \\beta_1 m_{t-1} + (1-\\beta_1) g_t`, a
curvature term refreshed every ``update_each`` steps and averaged with :math:`\\beta_2`,
the update :math:`u = m_t / \\text{denominator}`, an element-wise clip of :math:`u` to
:math:`[-\\rho, \\rho]`, decoupled weight decay and :math:`\\theta \\leftarrow
\\theta (1 - \\eta\\lambda) - \\eta u`. Moving averages start at zero without bias
correction, as in the study's code. The study's code drew its Rademacher probes with
``randint_like(p, 0, 1) * 2 - 1``, which is always ``-1`` (so its "diagonal" was the row sums
``H 1``); curvlab draws real Rademacher probes from the seeded generator.
"""

from __future__ import annotations

import torch

from .._public import public_dir
from ._clipped_momentum import ClippedMomentumOptimizer
from ._context import StepContext, hutchinson_diagonal

__all__ = ["SSDH", "SADH", "SSVP", "StepSizeOptimizer"]
__dir__ = public_dir(globals())


class StepSizeOptimizer(ClippedMomentumOptimizer):
    r"""Base class of the step-size adaptation family of study B (:class:`SSDH`,
    :class:`SADH`, :class:`SSVP`).

    All three share one skeleton: momentum :math:`m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t`,
    a curvature statistic refreshed every ``update_each`` steps and averaged with
    :math:`\beta_2` (from zero, without bias correction, as in the study's code), the update
    :math:`u = m_t / \text{denominator}`, clipped element-wise to :math:`[-\rho, \rho]` when
    ``clip=True``, and :math:`\theta \leftarrow \theta (1 - \eta\lambda) - \eta u`.
    Subclasses choose the curvature sample, its statistic and the denominator.
    The fraction of clipped coordinates at the last step is ``clip_rate()``.
    """

    _name = ""

    _buffers = ("momentum", "hessian_term")

    def __init__(
        self,
        params,
        lr: float = 0.1,
        betas: tuple[float, float] = (0.9, 0.99),
        rho: float = 0.05,
        weight_decay: float = 0.0,
        *,
        eps: float = 1e-12,
        update_each: int = 10,
        clip: bool = True,
        seed: int | torch.Generator | None = 0,
        process_group=None,
        max_grad_norm: float | None = None,
    ):
        self.clip = bool(clip)
        super().__init__(
            params,
            lr,
            betas,
            rho,
            weight_decay,
            eps=eps,
            update_each=update_each,
            seed=seed,
            process_group=process_group,
            max_grad_norm=max_grad_norm,
        )

    def _needs_graph(self) -> bool:
        return self._refresh()

    # curvature sample for the refresh (per parameter, same shape)
    def _sample(self, ctx: StepContext) -> list:  # pragma: no cover - abstract
        raise NotImplementedError

    # the EMA'd statistic of the sample, and the denominator from the EMA
    def _statistic(self, s):  # pragma: no cover - abstract
        raise NotImplementedError

    def _denominator(self, ema, eps):  # pragma: no cover - abstract
        raise NotImplementedError

    def _prepare(self, ctx: StepContext):
        if not self._refresh():
            return None
        ctx.require_graph(type(self).__name__)
        return self._sample(ctx)

    def _update_denominator(self, v, group):
        return self._denominator(v, group["eps"])

    def _clip_bound(self, group):
        return group["rho"] if self.clip else None


# the choices of the subclasses: curvature sample, its statistic, the denominator
def _hutchinson_sample(self: StepSizeOptimizer, ctx: StepContext) -> list:
    return hutchinson_diagonal(ctx, ctx.params, self._generator)


def _squared(self: StepSizeOptimizer, s):
    return s * s


def _absolute(self: StepSizeOptimizer, s):
    return s.abs()


def _root_plus_eps(self: StepSizeOptimizer, ema, eps):
    return ema.sqrt().add_(eps)


def _plus_eps(self: StepSizeOptimizer, ema, eps):
    return ema + eps


def _examples(name: str, **kwargs: str) -> str:
    """The Examples section of ``name`` (a step on a diagonal quadratic)."""
    args = "".join(f", {k}={v}" for k, v in {"lr": "0.5", **kwargs}.items())
    return f"""
    Examples
    --------
    >>> import torch
    >>> from curvlab.optim import {name}
    >>> w = torch.nn.Parameter(torch.ones(3))
    >>> opt = {name}([w]{args})
    >>> loss = opt.step(lambda: (torch.arange(1.0, 4.0) * w ** 2).sum())
"""


_PARAMS_DOC = r"""
    Parameters
    ----------
    params
        Parameters or parameter groups.
    lr
        Learning rate :math:`\eta` (default 0.1).
    betas
        :math:`(\beta_1, \beta_2)` for the momentum and the curvature average (default
        ``(0.9, 0.99)``; the study's code used ``(0.96, 0.99)``, its runs ``beta1 = 0.9``).
    rho
        Clip bound :math:`\rho` of the update (default 0.05; the study's code: 0.01).
    weight_decay
        Decoupled weight decay :math:`\lambda` (default 0).
    eps
        :math:`\epsilon` in the denominator (default ``1e-12``).
    update_each
        Curvature refresh period :math:`k` (default 10); the first step refreshes. Steps
        between refreshes take a plain gradient (no double-backward graph).
    clip
        Clip the update element-wise to :math:`[-\rho, \rho]` (default ``True``, as in the
        study's code).
    seed
        Seed of the probe generator.
"""

_REF = """
    References
    ----------
    The study "Does Using Second-Order Information for Step Size Adaptation Improve Neural
    Network Convergence Speed?" (EPFL CS-439 course project, 2024); the clipping follows
    H. Liu et al., "Sophia", ICLR 2024, arXiv:2305.14342, and the Hutchinson diagonal
    M. F. Hutchinson, Commun. Stat. Simul. Comput. 18(3), 1989.
"""


class SSDH(StepSizeOptimizer):
    __doc__ = (
        r"""Step sizes from the smoothed squared Hessian diagonal.

    With the Hutchinson diagonal :math:`h = z \odot (H z)` of a Rademacher probe :math:`z`,
    refreshed every :math:`k` steps:

    .. math::

        v \leftarrow \beta_2 v + (1 - \beta_2)\, h \odot h, \qquad
        u = \mathrm{clip}\!\left(\frac{m_t}{\sqrt{v} + \epsilon}, \rho\right), \qquad
        \theta \leftarrow \theta (1 - \eta\lambda) - \eta\, u.
"""
        + _PARAMS_DOC
        + _REF
        + _examples("SSDH")
    )

    _sample = _hutchinson_sample
    _statistic = _squared
    _denominator = _root_plus_eps


class SADH(StepSizeOptimizer):
    __doc__ = (
        r"""Step sizes from the smoothed absolute Hessian diagonal.

    With the Hutchinson diagonal :math:`h = z \odot (H z)`, refreshed every :math:`k` steps:

    .. math::

        v \leftarrow \beta_2 v + (1 - \beta_2)\, |h|, \qquad
        u = \mathrm{clip}\!\left(\frac{m_t}{v + \epsilon}, \rho\right), \qquad
        \theta \leftarrow \theta (1 - \eta\lambda) - \eta\, u.
"""
        + _PARAMS_DOC
        + _REF
        + _examples("SADH")
    )

    _sample = _hutchinson_sample
    _statistic = _absolute
    _denominator = _plus_eps


class SSVP(StepSizeOptimizer):
    __doc__ = (
        r"""Step sizes from a squared Hessian-vector product along the momentum sign.

    Every :math:`k` steps the probe is :math:`v = -\rho\, \mathrm{sign}(m_t)` (the clipped
    step direction) and

    .. math::

        s \leftarrow \beta_2 s + (1 - \beta_2)\, (H v) \odot (H v), \qquad
        u = \frac{m_t}{\sqrt{s} + \epsilon}, \qquad
        \theta \leftarrow \theta (1 - \eta\lambda) - \eta\, u .

    ``SSVP(clip=True)`` (the default, as in the study's code) is the Sophia-style clipped
    variant: :math:`u` is clipped element-wise to :math:`[-\rho, \rho]`;
    ``SSVP(clip=False)`` is the plain rule.
"""
        + _PARAMS_DOC
        + _REF
        + _examples("SSVP", clip="False")
    )

    def _sample(self, ctx):
        vs = []
        for group in self.param_groups:
            beta1 = group["betas"][0]
            for p in group["params"]:
                if not ctx.has(p):
                    continue
                st = self.state.get(p, {})
                m = st.get("momentum")
                g = p.grad
                m_new = (1 - beta1) * g if m is None else beta1 * m + (1 - beta1) * g
                vs.append((p, -group["rho"] * torch.sign(m_new)))
        order = {id(p): v for p, v in vs}
        vectors = [order[id(p)] for p in ctx.params]
        return ctx.hvp(ctx.params, vectors)

    _statistic = _squared
    _denominator = _root_plus_eps
