"""Base class for operators built from a model, a loss and data: it owns the data loop.

The empirical risk is ``L(theta) = sum_b w_b loss_fn(model(X_b), y_b)`` over every batch of
``data`` with ``w_b = B_b / N`` for mean-reduced losses (``B_b`` the batch size, ``N`` the
number of samples) and ``w_b = 1`` for sum-reduced ones: the batch-size-weighted mean, never an
unweighted mean of batch means, so that any split of the same data gives the same operator.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator

import torch
from torch import Tensor, nn

from .._batches import batch_size as _batch_size
from .._batches import call_model
from .._batches import to_device as _to_device
from .._distributed import all_reduce_checked, resolve_group, unwrap_ddp
from .._params import flatten, select_params, unflatten
from ._losses import reduction_of
from .base import CurvatureOperator

__all__ = ["EmpiricalRiskOperator"]

_RANDOM_MODULES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)
_NORM_MODULES = (nn.modules.batchnorm._BatchNorm,)
_CONV_MODULES = (nn.modules.conv._ConvNd,)


class EmpiricalRiskOperator(CurvatureOperator):
    """A curvature operator of the empirical risk of ``model`` under ``loss_fn`` over ``data``.

    Subclasses implement ``_batch_matmat``, the contribution of one batch (already
    weighted) to ``op @ V``. This class selects parameters, validates and counts the data,
    runs the determinism check, moves batches to the parameters' device, sums contributions
    and checks that products are finite.

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
        Parameter selection (see :func:`curvlab._params.select_params`).
    check_deterministic
        Run two passes over the data at construction and raise if they disagree.
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
        loss_fn,
        data: Iterable,
        *,
        params=None,
        mode: str = "rev-rev",
        check_deterministic: bool = True,
        process_group=None,
        batch_columns: bool | None = None,
    ):
        if mode not in ("rev-rev", "fwd-rev"):
            raise ValueError(f"mode must be 'rev-rev' or 'fwd-rev', got {mode!r}.")
        self.process_group = resolve_group(model, process_group)
        model = unwrap_ddp(model)
        if isinstance(params, str):
            params = [params]
        if isinstance(params, list | tuple) and params and isinstance(params[0], str):
            params = [p[len("module.") :] if p.startswith("module.") else p for p in params]
        names, tensors = select_params(model, params)
        dtype, device = tensors[0].dtype, tensors[0].device
        for n_, p in zip(names, tensors):
            if p.dtype != dtype or p.device != device:
                raise ValueError(
                    f"parameter {n_!r} is {p.dtype} on {p.device} but {names[0]!r} is {dtype} on "
                    f"{device}: all selected parameters must share dtype and device."
                )
            if not p.is_floating_point():
                raise TypeError(f"parameter {n_!r} is not floating point ({p.dtype}).")
        super().__init__(sum(p.numel() for p in tensors), dtype, device)
        if batch_columns is None:
            has_conv = any(isinstance(m, _CONV_MODULES) for m in model.modules())
            # fwd-rev columns do not share a graph: a loop would redo the forward pass per column
            batch_columns = not (has_conv and device.type == "cpu" and mode == "rev-rev")
        elif not isinstance(batch_columns, bool):
            raise TypeError(f"batch_columns must be True, False or None, got {batch_columns!r}.")
        #: whether several columns are batched (vmap) or looped; see ``batch_columns``
        self.batch_columns = batch_columns
        self.model = model
        self.loss_fn = loss_fn
        self.reduction = reduction_of(loss_fn)
        self.mode = mode
        self.param_names = names
        self.params = tensors
        if isinstance(data, Iterator):
            raise TypeError(
                "data is a one-shot iterator; operators pass over the data many times: "
                "pass a list of (X, y) batches or a DataLoader."
            )
        self.data = data
        error, sizes = None, []
        try:
            sizes = [self._validate_batch(b, i)[2] for i, b in enumerate(data)]
        except (TypeError, ValueError) as err:
            error = err
        count = torch.tensor([float(sum(sizes))], dtype=torch.float64, device=device)
        all_reduce_checked([count], error, self.process_group)
        self._batch_sizes = sizes
        if count.item() == 0:
            raise ValueError("data is empty: pass at least one non-empty (X, y) batch.")
        #: number of samples over all ranks (the denominator of the empirical risk)
        self.num_data = int(count.item())
        #: number of samples of this rank's shard
        self.num_local_data = sum(sizes)
        self._warn_train_mode()
        if check_deterministic:
            self._check_deterministic()

    # -- data ---------------------------------------------------------------------------------
    @staticmethod
    def _validate_batch(batch, i: int):
        if not isinstance(batch, tuple | list) or len(batch) != 2:
            raise TypeError(
                f"batch {i} is a {type(batch).__name__}"
                + (f" of length {len(batch)}" if isinstance(batch, tuple | list) else "")
                + "; every batch must be a pair (X, y). Wrap a TensorDataset in a DataLoader, "
                "or zip inputs and targets."
            )
        X, y = batch
        return X, y, _batch_size(X, y)

    def _batches(self):
        """Yield ``(index, X, y, weight)`` on the operator's device."""
        total = 0
        for i, batch in enumerate(self.data):
            X, y, b = self._validate_batch(batch, i)
            total += b
            w = b / self.num_data if self.reduction == "mean" else 1.0
            yield i, _to_device(X, self.device), _to_device(y, self.device), w
        if total != self.num_local_data:
            raise ValueError(
                f"the data held {self.num_local_data} samples at construction but {total} now: "
                "keep the data fixed (no drop_last with a changing size, no streaming)."
            )

    def forward(self, X):
        """Run the model on one batch's inputs (tensor, tuple or dict)."""
        return call_model(self.model, X)

    def batch_loss(self, out: Tensor, y, i: int, *, functional: bool = False) -> Tensor:
        """``loss_fn(out, y)`` checked to be a scalar.

        With ``functional=True`` (inside ``torch.func`` forward-mode transforms) ``nn.MSELoss``
        is written out explicitly: ``F.mse_loss`` fails under forward-over-reverse on some torch
        versions ("ZeroTensors are immutable").
        """
        if functional and isinstance(self.loss_fn, nn.MSELoss) and isinstance(y, Tensor):
            sq = (out - y) ** 2
            loss = sq.mean() if self.reduction == "mean" else sq.sum()
        else:
            loss = self.loss_fn(out, y)
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            shape = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
            raise ValueError(
                f"loss_fn returned {shape} on batch {i}, not a scalar: use reduction='mean' "
                "(or 'sum') so that the loss of a batch is one number."
            )
        return loss.reshape(())

    # -- checks ----------------------------------------------------------------------------
    def _warn_train_mode(self):
        bn = [
            n for n, m in self.model.named_modules() if isinstance(m, _NORM_MODULES) and m.training
        ]
        if bn:
            warnings.warn(
                f"BatchNorm layers {bn[:3]} are in train mode: the operator is the curvature with "
                "batch statistics, and every product updates their running statistics. Call "
                "model.eval() for the curvature of the inference function.",
                stacklevel=3,
            )

    def loss_and_gradient(self) -> tuple[Tensor, Tensor]:
        """The empirical risk and its gradient (flat), one pass over the data."""
        total = torch.zeros(1, dtype=self.dtype, device=self.device)
        grad = torch.zeros(self.shape[0], dtype=self.dtype, device=self.device)
        error = None
        try:
            for i, X, y, w in self._batches():
                with torch.enable_grad():
                    loss = w * self.batch_loss(self.forward(X), y, i)
                    if not torch.isfinite(loss):
                        raise ValueError(f"the loss is not finite on batch {i} ({loss.item()}).")
                    g = torch.autograd.grad(
                        loss, self.params, allow_unused=True, materialize_grads=True
                    )
                total += loss.detach()
                grad += flatten(g)
        except (TypeError, ValueError, RuntimeError) as err:
            error = err
        all_reduce_checked([total, grad], error, self.process_group)
        return total[0], grad

    def _check_deterministic(self):
        l1, g1 = self.loss_and_gradient()
        l2, g2 = self.loss_and_gradient()
        tol = 1e-10 if self.dtype == torch.float64 else 1e-4
        gscale = torch.linalg.vector_norm(g1) + tol
        if (l1 - l2).abs() > tol * (l1.abs() + 1e-12) + 1e-30 or torch.linalg.vector_norm(
            g1 - g2
        ) > tol * gscale:
            causes = []
            drop = [
                n
                for n, m in self.model.named_modules()
                if isinstance(m, _RANDOM_MODULES) and m.training
            ]
            if drop:
                causes.append(f"dropout layers {drop[:3]} in train mode (call model.eval())")
            bn = [
                n
                for n, m in self.model.named_modules()
                if isinstance(m, _NORM_MODULES) and m.training
            ]
            if bn:
                causes.append(
                    f"BatchNorm layers {bn[:3]} in train mode with batches that change between "
                    "passes (call model.eval())"
                )
            causes.append(
                "data that changes between passes (a shuffling DataLoader, random "
                "augmentation: use shuffle=False and fixed transforms)"
            )
            raise ValueError(
                "two passes over the data gave different losses or gradients "
                f"({l1.item():.10g} vs {l2.item():.10g}): the operator would not be a fixed "
                "matrix. Likely causes: " + "; ".join(causes) + ". Pass "
                "check_deterministic=False to skip this check."
            )

    # -- products --------------------------------------------------------------------------
    def _batch_matmat(self, X, y, w: float, i: int, V: list[Tensor], k: int) -> list[Tensor]:
        """Contribution of batch ``i`` (weight ``w``) to the product; ``V`` is unflattened
        into ``(k, *p.shape)`` tensors. Returns tensors of the same shapes."""
        raise NotImplementedError  # pragma: no cover

    def _local_matmat(self, Vs: list[Tensor], k: int) -> list[Tensor]:
        """This rank's unchecked product, as tensors shaped ``(k, *p.shape)``: the sum of
        every batch's contribution."""
        acc = None
        for i, X, y, w in self._batches():
            with torch.enable_grad():
                parts = self._batch_matmat(X, y, w, i, Vs, k)
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
        for i, X, y, w in self._batches():
            with torch.enable_grad():
                parts = self._batch_matmat(X, y, w, i, Vs, k)
            if not all(bool(torch.isfinite(p).all()) for p in parts):
                raise ValueError(
                    f"the product is not finite on batch {i}: check that batch for NaN/Inf "
                    "inputs or a diverged model."
                )
        raise ValueError(
            "the product is not finite although every batch's contribution is: the sum over "
            "batches overflows; use float64 or a smaller loss scale."
        )

    def _matmat(self, V: Tensor) -> Tensor:
        k = V.shape[1]
        Vs = unflatten(V, self.params)
        out = torch.zeros_like(V)
        error = None
        try:
            parts = self._local_matmat(Vs, k)
            out.copy_(torch.cat([p.reshape(k, -1) for p in parts], dim=1).T)
            # one finiteness check (one host synchronization) per product, not per batch
            if not bool(torch.isfinite(out).all()):
                self._raise_nonfinite(Vs, k)
        except (TypeError, ValueError, RuntimeError) as err:
            error = err
        all_reduce_checked([out], error, self.process_group)
        return out


def grad_with_graph(loss: Tensor, params: list[Tensor]) -> list[Tensor]:
    """First-order gradient with its graph (for double backward)."""
    return list(
        torch.autograd.grad(
            loss, params, create_graph=True, allow_unused=True, materialize_grads=True
        )
    )


def vjp_batched(
    outputs: list[Tensor],
    inputs: list[Tensor],
    cotangents: list[Tensor],
    k: int,
    *,
    retain_graph: bool,
    batched: bool = True,
) -> list[Tensor]:
    """``sum_j d outputs_j / d inputs`` contracted with ``k`` stacked cotangents.

    Outputs that do not require grad (constant gradients, e.g. of a bias in a linear model)
    contribute zero. ``k > 1`` with ``batched`` uses ``is_grads_batched`` (vmap over the
    backward pass), with a column loop as fallback for operations that have no batching rule;
    ``batched=False`` loops over the columns.
    """
    pairs = [(o, c) for o, c in zip(outputs, cotangents) if o.requires_grad]
    if not pairs:
        return [torch.zeros((k, *p.shape), dtype=p.dtype, device=p.device) for p in inputs]
    outs = [o for o, _ in pairs]
    cots = [c for _, c in pairs]
    if k == 1:
        res = torch.autograd.grad(
            outs,
            inputs,
            [c[0] for c in cots],
            retain_graph=retain_graph,
            allow_unused=True,
            materialize_grads=True,
        )
        return [r.unsqueeze(0) for r in res]
    if batched:
        try:
            return list(
                torch.autograd.grad(
                    outs,
                    inputs,
                    cots,
                    retain_graph=True,
                    allow_unused=True,
                    materialize_grads=True,
                    is_grads_batched=True,
                )
            )
        except (RuntimeError, NotImplementedError):
            pass  # an operation without a batching rule: loop over the columns
    cols = [
        torch.autograd.grad(
            outs,
            inputs,
            [c[j] for c in cots],
            retain_graph=retain_graph or j < k - 1,
            allow_unused=True,
            materialize_grads=True,
        )
        for j in range(k)
    ]
    return [torch.stack([col[m] for col in cols]) for m in range(len(inputs))]
