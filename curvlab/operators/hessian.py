"""The Hessian of the empirical risk."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor
from torch.func import functional_call, grad, jvp, vmap

from .empirical import EmpiricalRiskOperator, grad_with_graph, vjp_batched

__all__ = ["HessianOperator"]


def call_functional(op: EmpiricalRiskOperator, pdict: dict[str, Tensor], X):
    """``op.model`` evaluated with the selected parameters replaced by ``pdict``."""
    if isinstance(X, Mapping):
        return functional_call(op.model, pdict, args=(), kwargs=dict(X), strict=False)
    args = tuple(X) if isinstance(X, tuple | list) else (X,)
    return functional_call(op.model, pdict, args, strict=False)


def vmap_or_loop(fn, vdicts: dict[str, Tensor], k: int, op: EmpiricalRiskOperator):
    """Apply ``fn`` (dict -> dict) to ``k`` stacked directions: vmap where it works."""
    if k == 1:
        out = fn({n: v[0] for n, v in vdicts.items()})
        return {n: t.unsqueeze(0) for n, t in out.items()}
    if op.batch_columns and getattr(op, "_vmap_ok", True):
        try:
            return vmap(fn)(vdicts)
        except (RuntimeError, NotImplementedError, ValueError):
            op._vmap_ok = False
    cols = [fn({n: v[j] for n, v in vdicts.items()}) for j in range(k)]
    return {n: torch.stack([c[n] for c in cols]) for n in vdicts}


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
    batch_columns
        ``op @ V`` with several columns: batched (``True``), looped (``False``) or chosen by
        the model (``None``, the default; see :class:`~curvlab.EmpiricalRiskOperator`).

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
        model,
        loss_fn,
        data,
        *,
        params=None,
        mode: str = "rev-rev",
        check_deterministic: bool = True,
        process_group=None,
        graph_cache_mb: float = 256.0,
        batch_columns: bool | None = None,
    ):
        if not graph_cache_mb >= 0:
            raise ValueError(f"graph_cache_mb must be >= 0, got {graph_cache_mb}.")
        self.graph_cache_mb = float(graph_cache_mb)
        self._graphs: dict[int, list[Tensor]] = {}
        self._graph_bytes = 0
        self._graph_key = None
        self._total: list[Tensor] | None = None
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

    # -- first-order graph reuse (rev-rev) ----------------------------------------------------
    def _params_key(self):
        return tuple((p._version, p.data_ptr()) for p in self.params)

    def clear_cache(self) -> None:
        """Drop the first-order graphs kept for reuse (frees their memory)."""
        self._graphs.clear()
        self._graph_bytes = 0
        self._graph_key = None
        self._total = None

    def _local_matmat(self, Vs, k):
        if self.mode != "rev-rev" or self.graph_cache_mb <= 0:
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
        out = super()._local_matmat(Vs, k)
        if len(self._graphs) == len(self._batch_sizes) > 1:
            with torch.enable_grad():
                self._total = [sum(parts) for parts in zip(*self._graphs.values())]
        return out

    def _gradient_graph(self, X, y, w, i):
        """Batch ``i``'s gradient with its graph, and whether the graph is kept for reuse."""
        if i in self._graphs:
            return self._graphs[i], True
        budget = self.graph_cache_mb * 2**20 - self._graph_bytes
        if budget <= 0:
            loss = w * self.batch_loss(self.forward(X), y, i)
            return grad_with_graph(loss, self.params), False
        saved = {"bytes": 0, "seen": set()}

        def pack(t):
            key = (t.data_ptr(), t.numel(), t.dtype)
            if key not in saved["seen"]:
                saved["seen"].add(key)
                saved["bytes"] += t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = w * self.batch_loss(self.forward(X), y, i)
            g = grad_with_graph(loss, self.params)
        if saved["bytes"] <= budget:
            self._graphs[i] = g
            self._graph_bytes += saved["bytes"]
            return g, True
        return g, False

    def _batch_matmat(self, X, y, w, i, V, k):
        if self.mode == "rev-rev":
            if self.graph_cache_mb > 0:
                g, keep = self._gradient_graph(X, y, w, i)
            else:
                loss = w * self.batch_loss(self.forward(X), y, i)
                g, keep = grad_with_graph(loss, self.params), False
            return vjp_batched(g, self.params, V, k, retain_graph=keep, batched=self.batch_columns)

        pdict = {n: p.detach() for n, p in zip(self.param_names, self.params)}

        def f(pd):
            return w * self.batch_loss(call_functional(self, pd, X), y, i, functional=True)

        def hvp_one(vd):
            try:
                return jvp(grad(f), (pdict,), (vd,))[1]
            except RuntimeError as err:
                if "ZeroTensors are immutable" in str(err):
                    raise RuntimeError(
                        "forward-over-reverse failed inside loss_fn on this torch version "
                        "(a known torch.func limitation, e.g. F.mse_loss): use mode='rev-rev'."
                    ) from err
                raise

        out = vmap_or_loop(hvp_one, dict(zip(self.param_names, V)), k, self)
        return [out[n] for n in self.param_names]
