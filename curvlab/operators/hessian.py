"""The Hessian of the empirical risk."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn

from .._autograd import grad_with_graph, hvp_fwd_rev, vjp_batched, vmap_or_loop
from .._distributed import all_reduce_checked
from .._params import flatten
from .._public import public_dir
from ..risk import Batch, Output, fingerprint, user_stacklevel
from .empirical import EmpiricalRiskOperator

__all__ = ["HessianOperator"]
__dir__ = public_dir(globals())


class HessianOperator(EmpiricalRiskOperator):
    r"""Hessian :math:`\nabla^2 L(\theta)` of the empirical risk, as a linear operator.

    .. math:: L(\theta) = \frac{1}{N} \sum_n \ell(f_\theta(x_n), y_n)

    accumulated batch by batch (weighted by batch size; sums for ``reduction="sum"``).

    Parameters
    ----------
    model
        The network.
    loss_fn
        Any ``loss_fn(output, target) -> scalar`` (mean or sum reduction).
    data
        A re-iterable of ``(X, y)`` batches; ``X`` a tensor, a tuple or a dict.
    params
        ``None`` (all trainable), a submodule, a list of parameters, or names / glob patterns.
    mode
        ``"rev-rev"`` (default): autograd double backward, the fastest on CPU and small models;
        several columns ``op @ V`` share one first-order graph per batch and are batched with
        ``is_grads_batched``. ``"fwd-rev"``: ``torch.func`` forward-over-reverse, less memory on
        large models but slower through dispatch overhead on small ones, and unavailable for a
        few losses (``F.mse_loss(reduction="mean")`` fails on torch 2.13).
    check_deterministic
        Check at construction that two passes over the data agree (raises otherwise).
    process_group
        ``torch.distributed`` group for data-parallel curvature (see
        :class:`~curvlab.EmpiricalRiskOperator`).
    graph_cache_mb
        Memory budget (MiB) for keeping each batch's first-order gradient graph between
        products in ``"rev-rev"`` mode. Estimators make many products at the same parameters;
        with the graphs kept, a product costs one double-backward pass instead of a forward, a
        backward and a double backward. Batches whose graphs do not fit are recomputed. The
        graphs are dropped when a parameter changes in place (an optimizer step) or on
        :meth:`clear_cache`; ``0`` turns reuse off.
        A kept graph is used only for the batch it was built on: if the data changes between
        passes (a shuffling loader with ``check_deterministic=False``) the product is
        recomputed from one pass, reuse is turned off and a warning says so.
    batch_columns
        ``op @ V`` with several columns: batched (``True``), looped (``False``) or chosen by
        the model (``None``, the default; see :class:`~curvlab.EmpiricalRiskOperator`).
    output
        How to get the loss's input from the model's return value (see
        :func:`curvlab.risk.model_output`).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> import curvlab as cl
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <...>
    >>> model = nn.Linear(3, 1)
    >>> data = [(torch.randn(8, 3), torch.randn(8, 1))]
    >>> H = cl.HessianOperator(model, nn.MSELoss(), data)
    >>> H.shape
    (4, 4)
    >>> torch.allclose(H @ torch.ones(4), H.to_dense().sum(1))
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
        process_group=None,
        graph_cache_mb: float = 256.0,
        batch_columns: bool | None = None,
        output: Output = None,
    ):
        if not graph_cache_mb >= 0:
            raise ValueError(f"graph_cache_mb must be >= 0, got {graph_cache_mb}.")
        self.graph_cache_mb = float(graph_cache_mb)
        # batch index -> (gradient with its graph, fingerprint of the batch it was built on)
        self._graphs: dict[int, tuple[list[Tensor], Tensor]] = {}
        self._graph_bytes = 0
        self._graph_key = None
        self._total: list[Tensor] | None = None
        self._cache_off = False  # set when the data changed between passes
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

    # -- first-order graph reuse (rev-rev) ----------------------------------------------------
    def _params_key(self):
        return tuple((p._version, p.data_ptr()) for p in self.params)

    def clear_cache(self) -> None:
        """Drop the first-order graphs kept for reuse (frees their memory)."""
        self._graphs.clear()
        self._graph_bytes = 0
        self._graph_key = None
        self._total = None

    def _forget_failed_product(self) -> None:
        # a graph kept from a failed pass (e.g. one built under a fused attention kernel)
        # must not be reused by the next product
        self.clear_cache()

    def _caching(self) -> bool:
        return self.mode == "rev-rev" and self.graph_cache_mb > 0 and not self._cache_off

    def _local_matmat(self, Vs, k):
        if not self._caching():
            return super()._local_matmat(Vs, k)
        key = self._params_key()
        if key != self._graph_key:  # parameters changed in place: graphs are stale
            self.clear_cache()
            self._graph_key = key
        if self._total is not None:
            # every batch's graph is kept: one backward pass through their sum does the
            # whole product (one autograd call instead of one per batch; no data pass)
            with torch.enable_grad():
                return vjp_batched(
                    self._total, self.params, Vs, k, retain_graph=True, batched=self.batch_columns
                )
        reused = bool(self._graphs)
        self._mismatch = None
        out = super()._local_matmat(Vs, k)
        if reused and self._mismatch is not None and bool(self._mismatch):
            # a kept graph stood for a batch that this pass loaded with other samples (a
            # shuffling loader with check_deterministic=False): never mix two passes
            warnings.warn(
                "the data changed between passes (a shuffling DataLoader or a random "
                "augmentation?): a kept gradient graph no longer matched its batch. The product "
                "is recomputed from one pass and graph reuse is turned off for this operator. "
                "Use shuffle=False and fixed transforms (and check_deterministic=True).",
                stacklevel=user_stacklevel(),
            )
            self._cache_off = True
            self.clear_cache()
            return super()._local_matmat(Vs, k)
        if len(self._graphs) == len(self.risk.batch_sizes) > 1:
            with torch.enable_grad():
                self._total = [sum(parts) for parts in zip(*(g for g, _ in self._graphs.values()))]
        return out

    def gradient(self) -> Tensor:
        """The gradient of the empirical risk (flat). With graph reuse on (``rev-rev``,
        ``graph_cache_mb > 0``) the pass keeps each batch's first-order graph within the
        budget, so the next product reuses them: the gradient then costs no extra pass."""
        if not self._caching():
            return super().gradient()
        key = self._params_key()
        if key != self._graph_key:
            self.clear_cache()
            self._graph_key = key
        total = torch.zeros(self.shape[0], dtype=self.dtype, device=self.device)
        error = None
        try:
            self._mismatch = None
            with torch.enable_grad():
                for b in self.risk.batches():
                    g, _ = self._gradient_graph(b)
                    total += flatten([t.detach() for t in g])
            if len(self._graphs) == len(self.risk.batch_sizes) > 1:
                with torch.enable_grad():
                    self._total = [
                        sum(parts) for parts in zip(*(g for g, _ in self._graphs.values()))
                    ]
        except (TypeError, ValueError, RuntimeError) as err:
            self.clear_cache()
            error = err
        all_reduce_checked([total], error, self.risk.process_group)
        return total

    def _gradient_graph(self, batch: Batch):
        """The batch's gradient with its graph, and whether the graph is kept for reuse."""
        i = batch.index
        if i in self._graphs:
            g, fp = self._graphs[i]
            now = fingerprint(batch.X, batch.y)
            if now.shape != fp.shape:
                diff = torch.ones((), dtype=torch.bool, device=fp.device)
            else:
                diff = ((now - fp).abs() > 1e-9 * (fp.abs() + 1.0)).any()
            self._mismatch = diff if self._mismatch is None else self._mismatch | diff
            return g, True
        budget = self.graph_cache_mb * 2**20 - self._graph_bytes
        if budget <= 0:
            return grad_with_graph(self.risk.weighted_loss(batch), self.params), False
        saved = {"bytes": 0, "seen": set()}

        def pack(t):
            key = (t.data_ptr(), t.numel(), t.dtype)
            if key not in saved["seen"]:
                saved["seen"].add(key)
                saved["bytes"] += t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            g = grad_with_graph(self.risk.weighted_loss(batch), self.params)
        if saved["bytes"] <= budget:
            self._graphs[i] = (g, fingerprint(batch.X, batch.y))
            self._graph_bytes += saved["bytes"]
            return g, True
        return g, False

    def _batch_matmat(self, batch, V, k):
        if self.mode == "rev-rev":
            if self._caching():
                g, keep = self._gradient_graph(batch)
            else:
                g, keep = grad_with_graph(self.risk.weighted_loss(batch), self.params), False
            return vjp_batched(g, self.params, V, k, retain_graph=keep, batched=self.batch_columns)
        pdict = {n: p.detach() for n, p in zip(self.param_names, self.params)}

        def hvp_one(vd):
            return hvp_fwd_rev(lambda pd: self.risk.weighted_loss(batch, pd), pdict, vd)

        out = vmap_or_loop(
            hvp_one,
            dict(zip(self.param_names, V)),
            k,
            batched=self.batch_columns,
            memo=self._vmap_memo,
        )
        return [out[n] for n in self.param_names]
