"""The empirical Fisher: outer products of per-sample gradients."""

from __future__ import annotations

import torch
from torch.func import jvp, vjp

from ._losses import check_known, per_sample_contributions
from .empirical import EmpiricalRiskOperator, vjp_batched
from .hessian import call_functional, vmap_or_loop

__all__ = ["EmpiricalFisherOperator"]


class EmpiricalFisherOperator(EmpiricalRiskOperator):
    r"""Empirical Fisher :math:`F = \frac{1}{N}\sum_n \nabla \ell_n \nabla \ell_n^\top`.

    ``ell_n`` is sample ``n``'s loss normalized as the loss's reduction implies: with
    ``reduction="mean"`` the risk is :math:`L = \frac{1}{N}\sum_n \ell_n` (so for ``MSELoss``,
    which also averages over output entries, :math:`\ell_n = \|f_n - y_n\|^2 / D`) and
    :math:`F = \frac{1}{N}\sum_n \nabla\ell_n\nabla\ell_n^\top`; with ``reduction="sum"``,
    :math:`L = \sum_n \ell_n` and :math:`F = \sum_n \nabla\ell_n\nabla\ell_n^\top`.
    Products never materialize per-sample gradients: ``F v = J_\ell^\top (J_\ell v)`` with
    ``J_\ell`` the Jacobian of the vector of per-sample losses.

    Supports ``nn.CrossEntropyLoss``, ``nn.MSELoss`` and ``nn.BCEWithLogitsLoss``. The
    parameters (``params``, ``mode``, ``check_deterministic``, ``process_group``,
    ``batch_columns``) are those of :class:`~curvlab.EmpiricalRiskOperator`.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> import curvlab as cl
    >>> model = nn.Linear(4, 3)
    >>> data = [(torch.randn(16, 4), torch.randint(0, 3, (16,)))]
    >>> F = cl.EmpiricalFisherOperator(model, nn.CrossEntropyLoss(), data)
    >>> F.shape
    (15, 15)
    """

    def __init__(
        self,
        model,
        loss_fn,
        data,
        *,
        params=None,
        mode="rev-rev",
        check_deterministic=True,
        process_group=None,
        batch_columns: bool | None = None,
    ):
        check_known(loss_fn, "EmpiricalFisherOperator")
        super().__init__(
            model,
            loss_fn,
            data,
            params=params,
            mode=mode,
            check_deterministic=check_deterministic,
            process_group=process_group,
            batch_columns=batch_columns,
        )

    def _scale(self, w: float, batch: int) -> float:
        return w * batch if self.reduction == "mean" else w

    def _batch_matmat(self, X, y, w, i, V, k):
        if self.mode == "rev-rev":
            out = self.forward(X)
            self.batch_loss(out, y, i)
            c = per_sample_contributions(self.loss_fn, out, y)
            s = self._scale(w, c.shape[0])
            u = torch.zeros_like(c, requires_grad=True)
            gu = torch.autograd.grad(
                c, self.params, u, create_graph=True, allow_unused=True, materialize_grads=True
            )
            (jv,) = vjp_batched(list(gu), [u], V, k, retain_graph=True, batched=self.batch_columns)
            return vjp_batched(
                [c], self.params, [s * jv], k, retain_graph=False, batched=self.batch_columns
            )

        pdict = {n: p.detach() for n, p in zip(self.param_names, self.params)}

        def fc(pd):
            return per_sample_contributions(self.loss_fn, call_functional(self, pd, X), y)

        c, pullback = vjp(fc, pdict)
        s = self._scale(w, c.shape[0])

        def ef_one(vd):
            jv = jvp(fc, (pdict,), (vd,))[1]
            return pullback(s * jv)[0]

        res = vmap_or_loop(ef_one, dict(zip(self.param_names, V)), k, self)
        return [res[n] for n in self.param_names]
