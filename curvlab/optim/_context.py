"""What one step of a curvlab optimizer knows, and the curvature products through its graph.

A :class:`StepContext` holds the loss, the model output, the parameters that received a
gradient and their gradients, with the double-backward graph on steps that need
Hessian-vector products. Its products (:meth:`StepContext.hvp`, :meth:`~StepContext.
hvp_batched`, :meth:`~StepContext.dense_hessian`, :meth:`~StepContext.operator`) go through
:func:`curvlab._autograd.vjp_batched`, the one vector-Jacobian product of curvlab, count the
work, and are averaged over the process group in data-parallel steps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .._autograd import vjp_batched
from .._params import flatten_batched, unflatten
from .._random import rademacher_like
from ..operators.base import CurvatureOperator
from ._closure import ClosureError

__all__ = [
    "StepContext",
    "BlockHessianOperator",
    "hvp",
    "hvp_batched",
    "dense_block_hessian",
    "hutchinson_diagonal",
]


# -- products through the gradient graph ------------------------------------------------------


def hvp(grads: Sequence[Tensor], params: Sequence[Tensor], vectors: Sequence[Tensor]):
    """Hessian-vector product through a gradient graph (``create_graph=True`` gradients).

    ``grads[i]`` is the gradient w.r.t. ``params[i]``; the product is the block of the Hessian
    on ``params`` applied to ``vectors`` (one tensor per parameter). A gradient without a
    graph (a parameter that enters the loss linearly) contributes zero. The graph is retained
    (the caller drops it).
    """
    cots = [v.unsqueeze(0) for v in vectors]
    return [h[0] for h in vjp_batched(grads, params, cots, 1, retain_graph=True)]


def hvp_batched(grads: Sequence[Tensor], params: Sequence[Tensor], vectors: Sequence[Tensor]):
    """Like :func:`hvp` for ``k`` vectors at once: ``vectors[i]`` has shape ``(k, *shape)``
    (one batched double backward, or a loop where an operation has no batching rule)."""
    k = int(vectors[0].shape[0])
    return vjp_batched(grads, params, vectors, k, retain_graph=True)


class BlockHessianOperator(CurvatureOperator):
    """The Hessian block on ``params`` as a :class:`CurvatureOperator` (for ``curvlab.cg``)."""

    def __init__(self, grads: Sequence[Tensor], params: Sequence[Tensor], *, reduce=None):
        params = list(params)
        n = sum(p.numel() for p in params)
        super().__init__(n, params[0].dtype, params[0].device)
        self.params = params
        self._grads = list(grads)
        self._reduce = reduce

    def __matmul__(self, v):
        out = super().__matmul__(v)
        if self._reduce is not None and isinstance(out, Tensor):
            self._reduce([out])
        return out

    def _matmat(self, V: Tensor) -> Tensor:
        k = V.shape[1]
        out = vjp_batched(self._grads, self.params, unflatten(V, self.params), k, retain_graph=True)
        return flatten_batched(out, k)


def dense_block_hessian(
    grads: Sequence[Tensor], params: Sequence[Tensor], *, chunk_size: int = 256
) -> Tensor:
    """Materialize the Hessian block on ``params`` (``n`` products, batched in chunks)."""
    op = BlockHessianOperator(grads, params)
    H = op.to_dense(chunk_size=chunk_size)
    return 0.5 * (H + H.T)


# -- the step context --------------------------------------------------------------------------


@dataclass
class StepContext:
    """What one step knows: the loss, the model output, gradients and the graph.

    Attributes
    ----------
    loss : Tensor or None
        The loss with its graph (``None`` on the legacy path).
    output : Any
        The second item the closure returned, if any (the model output).
    params : list of Tensor
        The parameters that received a gradient, in the optimizer's order.
    grads : list of Tensor
        Their gradients; they carry a graph when ``has_graph``.
    has_graph : bool
        Whether Hessian-vector products can be taken through ``grads``.
    closure : callable or None
        Re-evaluates the loss value (no graph), for line searches.
    loss_value : Tensor or None
        The loss, detached (kept after :meth:`release`).
    loss_is_current : bool
        ``False`` when other parameters moved since the loss was evaluated (a member of a
        :class:`~curvlab.optim.BlockOptimizer` applied after another one).
    counts : dict
        Work done in this step: ``"hvps"`` (curvature-vector products), ``"gradients"`` and
        ``"loss_evals"`` beyond the closure's evaluation and gradient.
    """

    loss: Tensor | None
    output: Any
    params: list[Tensor]
    grads: list[Tensor]
    has_graph: bool
    closure: Callable[[], Tensor] | None
    loss_value: Tensor | None = None
    loss_is_current: bool = True
    counts: dict = field(default_factory=lambda: {"hvps": 0, "gradients": 0, "loss_evals": 0})
    _index: dict[int, int] = field(default_factory=dict)
    _ops: list = field(default_factory=list)
    #: data-parallel steps: gradients averaged over the process group (no graph)
    global_grads: list[Tensor] | None = None
    #: data-parallel steps: averages a list of tensors over the group, in place
    reduce: Callable[[list[Tensor]], None] | None = None
    world_size: int = 1
    #: the gradient the update uses, clipped by ``max_grad_norm`` (``None``: not clipped)
    update_grads: list[Tensor] | None = None

    def __post_init__(self):
        self._index = {id(p): i for i, p in enumerate(self.params)}
        if self.loss is not None and self.loss_value is None:
            self.loss_value = self.loss.detach()
        if self.closure is not None:
            inner = self.closure

            def counted() -> Tensor:
                self.counts["loss_evals"] += 1
                return inner()

            self.closure = counted

    def has(self, p: Tensor) -> bool:
        return id(p) in self._index

    def grad_of(self, p: Tensor) -> Tensor:
        """The gradient of ``p`` the update uses (averaged over the process group in
        data-parallel steps; clipped when the optimizer has ``max_grad_norm``)."""
        if self.update_grads is not None:
            return self.update_grads[self._index[id(p)]]
        grads = self.grads if self.global_grads is None else self.global_grads
        return grads[self._index[id(p)]]

    def _graph_grads(self, params: Sequence[Tensor]) -> list[Tensor]:
        return [self.grads[self._index[id(p)]] for p in params]

    def _reduced(self, tensors: list[Tensor]) -> list[Tensor]:
        if self.reduce is not None:
            self.reduce(tensors)
        return tensors

    def require_graph(self, who: str) -> None:
        if not self.has_graph:
            raise ClosureError(
                f"{who} needs Hessian-vector products but the gradients carry no graph: pass a "
                "closure to step(), or call loss.backward(create_graph=True) before step()."
            )

    def hvp(self, params: Sequence[Tensor], vectors: Sequence[Tensor]) -> list[Tensor]:
        """Hessian block on ``params`` times ``vectors`` (one tensor per parameter)."""
        self.counts["hvps"] += 1
        return self._reduced(hvp(self._graph_grads(params), params, vectors))

    def hvp_batched(self, params: Sequence[Tensor], vectors: Sequence[Tensor]) -> list[Tensor]:
        self.counts["hvps"] += int(vectors[0].shape[0])
        return self._reduced(hvp_batched(self._graph_grads(params), params, vectors))

    def dense_hessian(self, params: Sequence[Tensor]) -> Tensor:
        """The dense Hessian block on ``params`` (``n`` products; averaged over the group)."""
        H = dense_block_hessian(self._graph_grads(params), params)
        self.counts["hvps"] += H.shape[0]
        return self._reduced([H])[0]

    def operator(self, params: Sequence[Tensor]) -> BlockHessianOperator:
        return self.track(
            BlockHessianOperator(self._graph_grads(params), params, reduce=self.reduce)
        )

    def track(self, op: CurvatureOperator) -> CurvatureOperator:
        """Count the products of ``op`` in :attr:`counts` (read when the step ends)."""
        self._ops.append(op)
        return op

    def total_counts(self) -> dict:
        out = dict(self.counts)
        out["hvps"] += sum(op.num_matvecs for op in self._ops)
        return out

    def release(self) -> None:
        """Drop every reference to the graph."""
        self.loss = None
        self.output = None
        if self.global_grads is not None:
            self.grads = self.global_grads
        else:
            self.grads = [g.detach() for g in self.grads]
        self.has_graph = False
        self.counts = self.total_counts()
        self._ops = []  # the operators hold the graph too


def hutchinson_diagonal(
    ctx: StepContext, params: Sequence[Tensor], generator: torch.Generator
) -> list[Tensor]:
    r"""One Hutchinson sample :math:`z \odot (H z)` of the Hessian diagonal on ``params``.

    :math:`z` is a Rademacher probe drawn from ``generator``; one Hessian-vector product.
    """
    zs = rademacher_like(params, generator)
    return [z * hz for z, hz in zip(zs, ctx.hvp(params, zs))]
