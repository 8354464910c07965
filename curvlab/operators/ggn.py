"""The generalized Gauss-Newton matrix and the Monte-Carlo Fisher."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.distributed as dist
from torch import nn

from .._autograd import jvp_by_double_vjp, linearize, vjp_batched, vmap_or_loop
from .._checks import check_int
from .._public import public_dir
from .._random import Seed, make_generator
from ..risk import Output
from ._losses import (
    check_ggn_supported,
    check_known,
    mc_fisher_output_product,
    output_hessian_product,
    sample_output_gradients,
)
from .empirical import EmpiricalRiskOperator

__all__ = ["GGNOperator"]
__dir__ = public_dir(globals())


class GGNOperator(EmpiricalRiskOperator):
    r"""Generalized Gauss-Newton matrix :math:`G = \sum_n J_n^\top H_n J_n` (or its MC Fisher).

    ``J_n`` is the Jacobian of the network output for sample ``n`` with respect to the
    parameters and ``H_n`` the Hessian of the loss with respect to that output. For
    cross-entropy, MSE and BCE-with-logits the GGN equals the Fisher information matrix of the
    model's predictive distribution.

    Parameters
    ----------
    model, loss_fn, data, params, mode, check_deterministic, process_group, batch_columns
        As in :class:`~curvlab.HessianOperator`. The exact GGN works with any twice
        differentiable loss (closed forms for ``nn.CrossEntropyLoss``, ``nn.MSELoss`` and
        ``nn.BCEWithLogitsLoss``, autograd otherwise).
    mc_samples
        ``0`` (default): the exact GGN. ``m > 0``: the Monte-Carlo Fisher
        :math:`\frac{1}{m}\sum_j J^\top s_j s_j^\top J` with ``m`` labels sampled per input
        from the model's predictive distribution (``s_j`` the gradient of the loss at the
        sampled label), an unbiased estimate of the GGN. The same samples serve every
        product, so the operator is a fixed symmetric matrix.
    seed
        Seed of the label samples: an int, a ``torch.Generator`` (one integer seed is drawn
        from it) or ``None`` (a fresh seed); the integer is stored as ``self.seed``.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> import curvlab as cl
    >>> model = nn.Linear(4, 3)
    >>> data = [(torch.randn(16, 4), torch.randint(0, 3, (16,)))]
    >>> G = cl.GGNOperator(model, nn.CrossEntropyLoss(), data)
    >>> bool(torch.linalg.eigvalsh(G.to_dense()).min() > -1e-6)
    True
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
        mc_samples: int = 0,
        seed: Seed = None,
        process_group=None,
        batch_columns: bool | None = None,
        output: Output = None,
    ):
        mc_samples = check_int(mc_samples, "mc_samples", minimum=0)
        if mc_samples > 0:
            check_known(loss_fn, "The Monte-Carlo Fisher (mc_samples > 0)")
        check_ggn_supported(loss_fn)
        self.mc_samples = mc_samples
        # a Generator is drawn from (its state is not kept): the int seed reproduces the samples
        self.seed = make_generator(seed)[1] if mc_samples > 0 else None
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

    def _output_product(self, out, batch, M):
        w, i = batch.weight, batch.index
        if self.mc_samples == 0:
            return w * output_hessian_product(self.loss_fn, out, batch.y, M)
        gen = torch.Generator(device=out.device)
        rank = 0 if self.process_group is None else dist.get_rank(self.process_group)
        gen.manual_seed((self.seed * 1_000_003 + i * 7_919 + rank) % (2**63 - 1))
        S = sample_output_gradients(self.loss_fn, out, self.mc_samples, gen)
        return w * mc_fisher_output_product(self.loss_fn, out, batch.y, S, M)

    def _batch_matmat(self, batch, V, k):
        if self.mode == "rev-rev":
            out = self.risk.forward(batch)
            self.risk.batch_loss(out, batch)  # validates the loss on this batch
            jv = jvp_by_double_vjp(out, self.params, V, k, batched=self.batch_columns)
            hjv = self._output_product(out, batch, jv)
            return vjp_batched(
                [out], self.params, [hjv], k, retain_graph=False, batched=self.batch_columns
            )

        pdict = {n: p.detach() for n, p in zip(self.param_names, self.params)}

        out, vjp_fn, jvp_fn = linearize(lambda pd: self.risk.forward(batch, pd), pdict)
        self.risk.batch_loss(out, batch)

        def ggn_one(vd):
            return vjp_fn(self._output_product(out, batch, jvp_fn(vd)))

        res = vmap_or_loop(
            ggn_one,
            dict(zip(self.param_names, V)),
            k,
            batched=self.batch_columns,
            memo=self._vmap_memo,
        )
        return [res[n] for n in self.param_names]
