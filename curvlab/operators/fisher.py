"""The empirical Fisher: outer products of per-sample gradients."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from torch import nn

from .._autograd import jvp_by_double_vjp, linearize, vjp_batched, vmap_or_loop
from .._public import public_dir
from ..risk import Output
from ._losses import check_known, per_sample_terms
from .empirical import EmpiricalRiskOperator

__all__ = ["EmpiricalFisherOperator"]
__dir__ = public_dir(globals())


class EmpiricalFisherOperator(EmpiricalRiskOperator):
    r"""Empirical Fisher :math:`F = \sum_b \frac{w_b}{M_b} \sum_{n\in b} \nabla t_n\nabla t_n^\top`.

    ``t_n`` is sample ``n``'s loss summed over its entries (its ``C`` outputs for ``MSELoss``
    and ``BCEWithLogitsLoss``, its counted positions for ``CrossEntropyLoss`` over
    ``(B, V, T)`` logits), ``M_b`` the number of entries the mean-reduced loss of batch ``b``
    divides by (so that the batch loss is :math:`\frac{1}{M_b}\sum_n t_n`) and ``w_b = B_b/N``
    the batch weight of the empirical risk. For one output per sample and one batch this is
    the familiar :math:`\frac{1}{N}\sum_n \nabla\ell_n\nabla\ell_n^\top`. With
    ``reduction="sum"``, :math:`F = \sum_n \nabla t_n\nabla t_n^\top`.

    This normalization makes the empirical Fisher the Fisher's plug-in estimate: its
    expectation over labels drawn from the model's own predictive distribution (a Gaussian
    of variance 1/2 per output for ``MSELoss``, whose negative log-likelihood is the squared
    error; Bernoulli for ``BCEWithLogitsLoss``; categorical for ``CrossEntropyLoss``) is the
    Fisher information, which for these losses equals the GGN
    (:class:`~curvlab.GGNOperator`); the Monte-Carlo Fisher (``GGNOperator(mc_samples=m)``)
    samples those labels, where the empirical Fisher uses the data's labels. Products never
    materialize per-sample gradients: ``F v = J_t^\top (J_t v) / M`` with ``J_t`` the Jacobian
    of the vector of per-sample terms.

    Supports ``nn.CrossEntropyLoss``, ``nn.MSELoss`` and ``nn.BCEWithLogitsLoss``. The
    parameters (``params``, ``mode``, ``check_deterministic``, ``process_group``,
    ``batch_columns``, ``output``) are those of :class:`~curvlab.EmpiricalRiskOperator`.

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
        model: nn.Module,
        loss_fn: Callable,
        data: Iterable,
        *,
        params=None,
        mode: str = "rev-rev",
        check_deterministic: bool = True,
        process_group=None,
        batch_columns: bool | None = None,
        output: Output = None,
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
            output=output,
        )

    def _terms(self, out, batch):
        self.risk.batch_loss(out, batch)  # validates the loss on this batch
        terms, count = per_sample_terms(self.loss_fn, out, batch.y)
        return terms, batch.weight / count

    def _batch_matmat(self, batch, V, k):
        if self.mode == "rev-rev":
            terms, s = self._terms(self.risk.forward(batch), batch)
            jv = jvp_by_double_vjp(terms, self.params, V, k, batched=self.batch_columns)
            return vjp_batched(
                [terms], self.params, [s * jv], k, retain_graph=False, batched=self.batch_columns
            )

        pdict = {n: p.detach() for n, p in zip(self.param_names, self.params)}

        scale = {}

        def fc(pd):
            terms, scale["s"] = self._terms(self.risk.forward(batch, pd), batch)
            return terms

        _, vjp_fn, jvp_fn = linearize(fc, pdict)
        s = scale["s"]  # w_b / M_b, from the targets only: not a function of the parameters

        def ef_one(vd):
            return vjp_fn(s * jvp_fn(vd))

        res = vmap_or_loop(
            ef_one,
            dict(zip(self.param_names, V)),
            k,
            batched=self.batch_columns,
            memo=self._vmap_memo,
        )
        return [res[n] for n in self.param_names]
