"""Base class for operators built from a model, a loss and data.

The data contract (batches, weights, outputs, the determinism check, train/eval mode, process
groups) is :class:`curvlab.EmpiricalRisk`'s; an operator holds one (``op.risk``) and adds the
product of one batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn

from .._autograd import curvature_pass, padding_rows
from .._distributed import all_reduce_checked
from .._params import unflatten
from .._public import public_dir
from ..risk import Batch, EmpiricalRisk, Output
from .base import CurvatureOperator

__all__ = ["EmpiricalRiskOperator"]
__dir__ = public_dir(globals())

_CONV_MODULES = (nn.modules.conv._ConvNd,)


class EmpiricalRiskOperator(CurvatureOperator):
    """A curvature operator of the empirical risk of ``model`` under ``loss_fn`` over ``data``.

    Subclasses implement ``_batch_matmat(batch, V, k)``, the contribution of one
    :class:`~curvlab.risk.Batch` (already weighted) to ``op @ V``. The data contract is the
    operator's :class:`~curvlab.EmpiricalRisk` (``op.risk``): parameter selection, batch
    validation and weights, device and dtype of the batches, the model's output, the
    determinism check; this class sums the batches' contributions and checks that products
    are finite.

    Parameters
    ----------
    model
        A ``torch.nn.Module``; its parameters fix the operator's dtype and device.
    loss_fn
        ``loss_fn(output, target) -> scalar`` with reduction ``"mean"`` or ``"sum"``.
    data
        A re-iterable of ``(X, y)`` batches (a list, a DataLoader without shuffling...). ``X``
        is a tensor, a tuple (passed positionally) or a dict (passed as keyword arguments).
    params
        Parameter selection (see :func:`curvlab.params.select_params`).
    check_deterministic
        Compare two passes over the data at construction, batch by batch (inputs, targets and
        losses), and raise if they disagree (a shuffling loader, random augmentation, dropout).
    process_group
        ``torch.distributed`` group for data-parallel curvature: each rank passes its own
        shard as ``data``; sample counts, losses, gradients and products are summed over the
        group (one ``all_reduce`` of ``n * k`` numbers per product), so every rank holds the
        full-data product. ``None`` (default): single process, unless ``model`` is wrapped in
        ``DistributedDataParallel``, whose group is then used.
    batch_columns
        How a product with several columns ``op @ V`` is computed: ``True`` batches the
        columns through one vmapped backward pass (``is_grads_batched``) or ``torch.func.vmap``;
        ``False`` loops over the columns (sharing each batch's forward pass and, for the
        Hessian, its kept first-order graph). ``None`` (default) batches, except in
        ``"rev-rev"`` mode on CPU for models with a convolution layer, where PyTorch's
        batching rules for the convolution's double backward copy the columns and the loop is
        faster (small CNN, 8 columns: 2.1 vs 1.2 gradients per column; an MLP: 0.7 batched vs
        1.4 looped). In ``"fwd-rev"`` mode a loop would redo the forward pass per column. The
        columns give the same numbers either way, to rounding. The choice is ``self.batch_columns``.
    output
        How to get the loss's input from what the model returns (a Hugging Face
        ``ModelOutput``, a dict, a tuple): see :func:`curvlab.risk.model_output`.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> import curvlab as cl
    >>> data = [(torch.randn(5, 2), torch.randn(5, 1)), (torch.randn(3, 2), torch.randn(3, 1))]
    >>> H = cl.HessianOperator(nn.Linear(2, 1), nn.MSELoss(), data)
    >>> isinstance(H, cl.EmpiricalRiskOperator), H.num_data, H.shape
    (True, 8, (3, 3))
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
        if mode not in ("rev-rev", "fwd-rev"):
            raise ValueError(f"mode must be 'rev-rev' or 'fwd-rev', got {mode!r}.")
        if batch_columns is not None and not isinstance(batch_columns, bool):
            raise TypeError(f"batch_columns must be True, False or None, got {batch_columns!r}.")
        #: the :class:`~curvlab.EmpiricalRisk` whose curvature this is (the data contract)
        self.risk = EmpiricalRisk(
            model,
            loss_fn,
            data,
            params=params,
            process_group=process_group,
            check_deterministic=check_deterministic,
            output=output,
        )
        risk = self.risk
        super().__init__(risk.num_params, risk.dtype, risk.device)
        # the data contract lives in the risk; these are its views, for convenience
        self.model, self.loss_fn, self.data = risk.model, risk.loss_fn, risk.data
        self.reduction, self.process_group = risk.reduction, risk.process_group
        self.param_names, self.params = risk.param_names, risk.params
        #: number of samples over all ranks (the denominator of the empirical risk)
        self.num_data = risk.num_data
        #: number of samples of this rank's shard
        self.num_local_data = risk.num_local_data
        if batch_columns is None:
            has_conv = any(isinstance(m, _CONV_MODULES) for m in risk.model.modules())
            # fwd-rev columns do not share a graph: a loop would redo the forward pass per column
            batch_columns = not (has_conv and risk.device.type == "cpu" and mode == "rev-rev")
        #: whether several columns are batched (vmap) or looped; see ``batch_columns``
        self.batch_columns = batch_columns
        self.mode = mode
        self._vmap_memo: dict = {}
        # entries of embedding rows at padding_idx: constants for autograd, zeroed in directions
        self._padding = padding_rows(risk.model, risk.param_names, risk.params)

    def loss_and_gradient(self) -> tuple[Tensor, Tensor]:
        """The empirical risk and its gradient (flat), one pass over the data
        (:meth:`curvlab.EmpiricalRisk.loss_and_gradient`)."""
        return self.risk.loss_and_gradient()

    def gradient(self) -> Tensor:
        """The gradient of the empirical risk (flat, in parameter order): one pass over the
        data, or none where the operator keeps the first-order graphs (the start of
        ``eigsh(op, v0="gradient")``)."""
        return self.risk.loss_and_gradient()[1]

    # -- products --------------------------------------------------------------------------
    def _batch_matmat(self, batch: Batch, V: list[Tensor], k: int) -> list[Tensor]:
        """Contribution of one (weighted) batch to the product; ``V`` is unflattened into
        ``(k, *p.shape)`` tensors. Returns tensors of the same shapes."""
        raise NotImplementedError  # pragma: no cover

    def _local_matmat(self, Vs: list[Tensor], k: int) -> list[Tensor]:
        """This rank's unchecked product, as tensors shaped ``(k, *p.shape)``: the sum of
        every batch's contribution."""
        acc = None
        for batch in self.risk.batches():
            with torch.enable_grad():
                parts = self._batch_matmat(batch, Vs, k)
            if acc is None:
                acc = list(parts)
            else:
                for a, p in zip(acc, parts):
                    a.add_(p)
        if acc is None:
            return [torch.zeros((k, *p.shape), dtype=p.dtype, device=p.device) for p in self.params]
        return acc

    def _raise_nonfinite(self, Vs: list[Tensor], k: int):
        """The product was not finite: find the batch to name (a second pass, on this
        failure path only) and raise."""
        for batch in self.risk.batches():
            with torch.enable_grad():
                parts = self._batch_matmat(batch, Vs, k)
            if not all(bool(torch.isfinite(p).all()) for p in parts):
                raise ValueError(
                    f"the product is not finite on batch {batch.index}: check that batch for "
                    "NaN/Inf inputs or a diverged model."
                )
        raise ValueError(
            "the product is not finite although every batch's contribution is: the sum over "
            "batches overflows; use float64 or a smaller loss scale."
        )

    def _forget_deferred(self) -> None:
        self._last_failing = None

    def _raise_deferred_nonfinite(self) -> None:
        # the latest product under deferred checks was (or followed) the non-finite one
        Vs, k = self._last_failing
        with curvature_pass():
            self._raise_nonfinite(Vs, k)

    def _forget_failed_product(self) -> None:
        """Drop state a failed product may have left (subclasses with caches override)."""

    def _matmat(self, V: Tensor) -> Tensor:
        k = V.shape[1]
        if self._padding.numel():
            V = V.index_fill(0, self._padding, 0.0)
        Vs = unflatten(V, self.params)
        out = torch.zeros_like(V)
        error = None
        try:
            if torch.is_autocast_enabled(out.device.type):
                raise RuntimeError(
                    "curvature products under torch.autocast are refused: the forward would run "
                    "in low precision (bf16 products are off by ~3e-3 of their norm) and the "
                    "solvers' bookkeeping with them, so eigsh and cg stall or return low-"
                    "precision results without an error. Leave autocast for the analysis: with "
                    f"torch.autocast({out.device.type!r}, enabled=False): ..."
                )
            with curvature_pass():
                parts = self._local_matmat(Vs, k)
                out.copy_(torch.cat([p.reshape(k, -1) for p in parts], dim=1).T)
                bad = ~torch.isfinite(out).all()
                if self._defer_checks and self.process_group is None:
                    # no host synchronization: the estimator reads the flag once per iteration
                    self._nonfinite = bad if self._nonfinite is None else self._nonfinite | bad
                    self._last_failing = (Vs, k)
                elif bool(bad):  # one finiteness check (one sync) per product, not per batch
                    self._raise_nonfinite(Vs, k)
        except (TypeError, ValueError, RuntimeError, NotImplementedError) as err:
            self._forget_failed_product()
            error = err
        all_reduce_checked([out], error, self.process_group)
        return out
