"""The closure contract shared by every curvlab optimizer.

``loss = opt.step(closure)``: the closure recomputes the loss (or ``(loss, output)``) and does
*not* call ``backward``. The optimizer evaluates it once, takes the gradient itself with
:func:`torch.autograd.grad` (building the double-backward graph only on steps that need
Hessian-vector products), writes a detached ``p.grad``, and drops every reference to the graph
before returning, so nothing leaks from one step to the next.

Each optimizer is split into two phases so that several of them can share one graph (see
:class:`~curvlab.optim.BlockOptimizer`):

``_prepare(ctx)``
    all work that needs the graph (Hessian-vector products, linear solves); parameters are
    not modified.
``_apply(ctx, plan)``
    the parameter update, under ``torch.no_grad()``; may re-evaluate the closure (line
    searches) but never uses the graph.
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from torch.optim import Optimizer

from .. import _random
from ..operators.base import CurvatureOperator

__all__ = [
    "CurvatureOptimizer",
    "ClosureError",
    "LegacyStepWarning",
    "StepContext",
]

Closure = Callable[[], Any]


class ClosureError(ValueError, TypeError, RuntimeError):
    """A closure is missing, returns something other than a scalar loss, or calls backward.

    It derives from :class:`ValueError`, :class:`TypeError` and :class:`RuntimeError`, so code
    that catches any of the three (as the original optimizers' users do) keeps working.
    """


class LegacyStepWarning(UserWarning):
    """``opt.step()`` was called without a closure on a method that uses curvature.

    The legacy path (``loss.backward(create_graph=True); opt.step()``) works, but the graph
    that ``backward(create_graph=True)`` builds lives in ``p.grad`` until the optimizer
    detaches it, and a method with ``update_each > 1`` builds it on every step even when it
    does not need it. Pass a closure to avoid both.
    """


# -- small validation helpers --------------------------------------------------------------


def _user_stacklevel() -> int:
    """``stacklevel`` that points a warning at the first frame outside curvlab.optim and
    torch.optim (the user's ``opt.step()`` line, through torch's step wrappers)."""
    here = os.path.dirname(os.path.abspath(__file__))
    torch_optim = os.path.dirname(os.path.abspath(torch.optim.__file__))
    frame, level = sys._getframe(1), 1  # the caller of this function is level 1
    while frame is not None:
        path = os.path.abspath(frame.f_code.co_filename)
        if not (path.startswith(here) or path.startswith(torch_optim)):
            return level
        frame, level = frame.f_back, level + 1
    return 1


def check_nonneg(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}.")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite non-negative number, got {value}.")


def check_positive(name: str, value: float) -> None:
    check_nonneg(name, value)
    if value == 0:
        raise ValueError(f"{name} must be positive, got {value}.")


def check_int(name: str, value: int, minimum: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")


def check_beta(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}.")


def check_betas(betas) -> None:
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}.")
    check_beta("betas[0]", betas[0])
    check_beta("betas[1]", betas[1])


# -- closure handling ------------------------------------------------------------------------


def split_closure_output(out: Any) -> tuple[Tensor, Any]:
    """Return ``(loss, output)`` from what a closure returned, checking the loss."""
    output = None
    if isinstance(out, (tuple, list)):
        if len(out) != 2:
            raise ClosureError(
                f"the closure returned a sequence of length {len(out)}: return the loss, or "
                "a pair (loss, output)."
            )
        out, output = out
    if not isinstance(out, Tensor):
        raise ClosureError(
            f"the closure must return the loss as a tensor (or (loss, output)), got "
            f"{type(out).__name__}; return the loss tensor itself, not loss.item()."
        )
    if out.numel() != 1:
        raise ClosureError(
            f"the closure returned a loss of shape {tuple(out.shape)}: the loss must be a "
            "scalar; reduce it (e.g. reduction='mean' or loss.mean())."
        )
    if not out.requires_grad:
        raise ClosureError(
            "the loss returned by the closure does not require grad: compute it from the "
            "optimizer's parameters, outside torch.no_grad()."
        )
    return out.reshape(()), output


def evaluate_closure(closure: Closure) -> tuple[Tensor, Any]:
    if not callable(closure):
        raise ClosureError(f"closure must be callable, got {type(closure).__name__}.")
    with torch.enable_grad():
        return split_closure_output(closure())


def loss_only_closure(closure: Closure) -> Callable[[], Tensor]:
    """A closure for re-evaluations (line searches): the loss value, no graph."""

    def f() -> Tensor:
        with torch.no_grad():
            out = closure()
        if isinstance(out, (tuple, list)):
            out = out[0]
        if not isinstance(out, Tensor) or out.numel() != 1:
            raise ClosureError("the closure must return a scalar loss tensor.")
        return out.detach().reshape(())

    return f


def take_gradient(
    loss: Tensor, params: Sequence[Tensor], *, create_graph: bool
) -> list[Tensor | None]:
    """``torch.autograd.grad`` with a clear error when the closure already ran backward."""
    try:
        return list(
            torch.autograd.grad(
                loss,
                list(params),
                create_graph=create_graph,
                retain_graph=True,
                allow_unused=True,
            )
        )
    except RuntimeError as err:
        msg = str(err)
        if "second time" in msg or "already been freed" in msg:
            raise ClosureError(
                "the graph of the loss was already freed: the closure must return the loss "
                "WITHOUT calling loss.backward(); curvlab optimizers take the gradient "
                "themselves."
            ) from err
        raise


# -- randomness --------------------------------------------------------------------------------


def make_generator(
    seed: int | torch.Generator | None, device: torch.device
) -> tuple[int, torch.Generator]:
    """The probe generator of an optimizer and the integer seed saved in its ``state_dict``.

    Follows :func:`curvlab._random.make_generator` with ``share=True``: a Generator is used
    as it is (its stream advances across steps) and reported by its ``initial_seed()``; an int
    seeds a new generator on ``device``; ``None`` takes a fresh seed from the operating
    system. Returns ``(seed, generator)``.
    """
    gen, used = _random.make_generator(seed, device, share=True)
    return (int(gen.initial_seed()) if used is None else used), gen


def rademacher_like(
    params: Sequence[Tensor], generator: torch.Generator, num: int | None = None
) -> list[Tensor]:
    """Real Rademacher (+-1 with probability 1/2) probes shaped like ``params``.

    One flat draw is split over the parameters. ``num`` probes give tensors ``(num, *shape)``.
    """
    n = sum(p.numel() for p in params)
    dev = generator.device
    shape = (n,) if num is None else (num, n)
    flat = torch.randint(0, 2, shape, generator=generator, device=dev, dtype=torch.int8)
    sizes = [p.numel() for p in params]
    out = []
    for chunk, p in zip(torch.split(flat, sizes, dim=-1), params):
        v = chunk.to(device=p.device, dtype=p.dtype).mul_(2).sub_(1)
        out.append(v.view(p.shape) if num is None else v.view(num, *p.shape))
    return out


def randn_flat(n: int, generator: torch.Generator, like: Tensor) -> Tensor:
    z = torch.randn(n, generator=generator, device=generator.device, dtype=like.dtype)
    return z.to(like.device)


# -- products through the gradient graph ------------------------------------------------------


def _grad_vector_products(grads, params, vectors, **kwargs) -> list[Tensor | None] | None:
    """``autograd.grad`` of the gradients that carry a graph, against ``vectors``.

    ``None`` when no gradient carries a graph; an entry is ``None`` where ``params[i]`` does
    not enter the products.
    """
    pairs = [(g, v) for g, v in zip(grads, vectors) if g.requires_grad]
    if not pairs:
        return None
    return torch.autograd.grad(
        [g for g, _ in pairs],
        list(params),
        grad_outputs=[v for _, v in pairs],
        retain_graph=True,
        allow_unused=True,
        **kwargs,
    )


def _zeros_for_missing(out, params, k: int | None = None) -> list[Tensor]:
    """``out`` with every missing product (``None``, or all of them) replaced by zeros (of
    shape ``(k, *p.shape)`` for ``k`` batched products)."""
    out = [None] * len(params) if out is None else out
    return [o if o is not None else _zeros(p, k) for o, p in zip(out, params)]


def _zeros(p: Tensor, k: int | None) -> Tensor:
    if k is None:
        return torch.zeros_like(p)
    return torch.zeros(k, *p.shape, dtype=p.dtype, device=p.device)


def hvp(grads: Sequence[Tensor], params: Sequence[Tensor], vectors: Sequence[Tensor]):
    """Hessian-vector product through a gradient graph (``create_graph=True`` gradients).

    ``grads[i]`` is the gradient w.r.t. ``params[i]``; the product is the block of the Hessian
    on ``params`` applied to ``vectors``. The graph is retained (the caller drops it).
    """
    return _zeros_for_missing(_grad_vector_products(grads, params, vectors), params)


def hvp_batched(grads: Sequence[Tensor], params: Sequence[Tensor], vectors: Sequence[Tensor]):
    """Like :func:`hvp` for ``k`` vectors at once: ``vectors[i]`` has shape ``(k, *shape)``."""
    k = vectors[0].shape[0]
    if k == 1:
        return [h.unsqueeze(0) for h in hvp(grads, params, [v[0] for v in vectors])]
    try:
        out = _grad_vector_products(grads, params, vectors, is_grads_batched=True)
    except RuntimeError:  # an op without a batching rule: one product at a time
        cols = [hvp(grads, params, [v[j] for v in vectors]) for j in range(k)]
        return [torch.stack([c[i] for c in cols]) for i in range(len(params))]
    return _zeros_for_missing(out, params, k)


def flat(tensors: Sequence[Tensor]) -> Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def split_like(vec: Tensor, like: Sequence[Tensor]) -> list[Tensor]:
    sizes = [p.numel() for p in like]
    return [c.view_as(p) for c, p in zip(torch.split(vec, sizes), like)]


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
        if k == 1:
            return flat(hvp(self._grads, self.params, split_like(V[:, 0], self.params)))[:, None]
        cols = V.T
        sizes = [p.numel() for p in self.params]
        vs = [c.reshape(k, *p.shape) for c, p in zip(torch.split(cols, sizes, dim=1), self.params)]
        out = hvp_batched(self._grads, self.params, vs)
        return torch.cat([o.reshape(k, -1) for o in out], dim=1).T


def dense_block_hessian(
    grads: Sequence[Tensor], params: Sequence[Tensor], *, chunk_size: int = 256
) -> Tensor:
    """Materialize the Hessian block on ``params`` (``n`` products, batched in chunks)."""
    op = BlockHessianOperator(grads, params)
    H = op.to_dense(chunk_size=chunk_size)
    return 0.5 * (H + H.T)


# -- the step context and the base class ------------------------------------------------------


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
        """The gradient of ``p`` (averaged over the process group in data-parallel steps)."""
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


class CurvatureOptimizer(Optimizer):
    """Base class of the curvlab optimizers: the closure contract and the legacy path.

    Subclasses implement ``_needs_graph`` (does the next step take Hessian-vector
    products?), ``_prepare`` (graph work, no parameter change) and ``_apply`` (the
    update). The base class evaluates the closure, takes the gradient, writes ``p.grad``,
    frees the graph, counts steps, and saves the probe generator in the ``state_dict``.

    Parameters
    ----------
    params
        Parameters or parameter groups, as for any :class:`torch.optim.Optimizer`.
    defaults
        Default hyperparameters of a group.
    seed
        Seed of the probe generator (an int, a :class:`torch.Generator` or ``None`` for fresh
        entropy). The generator lives on the device of the first parameter.
    process_group
        ``torch.distributed`` group for data-parallel training (DDP): each rank's closure
        returns the mean loss of its own shard (equal shard sizes); gradients, curvature
        products and loss values are averaged over the group explicitly (DDP does not
        synchronize double backward), probes are identical on every rank (the same seed;
        ``seed=None`` takes rank 0's), so every rank takes the same step.
    """

    #: a closure is required (the method re-evaluates the loss)
    requires_closure: bool = False
    #: the method uses the model output returned by the closure
    uses_output: bool = False
    #: the method never needs Hessian-vector products (first-order)
    hvp_free: bool = False

    def __init__(
        self,
        params,
        defaults: dict,
        *,
        seed: int | torch.Generator | None = 0,
        process_group=None,
    ):
        if "lr" in defaults:
            check_nonneg("lr", defaults["lr"])
        super().__init__(params, defaults)
        for group in self.param_groups:
            if "lr" in group:
                check_nonneg("lr", group["lr"])
            self._check_group(group)
        first = next((p for g in self.param_groups for p in g["params"]), None)
        device = first.device if first is not None else torch.device("cpu")
        self.process_group = process_group
        if process_group is not None:
            if not (dist.is_available() and dist.is_initialized()):
                raise RuntimeError(
                    "process_group was given but torch.distributed is not initialized: call "
                    "torch.distributed.init_process_group first (e.g. under torchrun)."
                )
            if seed is None:  # every rank must draw the same probes: take rank 0's seed
                box = torch.tensor([_random.fresh_seed()], dtype=torch.int64, device=device)
                dist.broadcast(box, src=dist.get_global_rank(process_group, 0), group=process_group)
                seed = int(box.item())
        self.seed, self._generator = make_generator(seed, device)
        self._num_steps = 0
        self._legacy_warned = False
        self.counts = {"steps": 0, "loss_evals": 0, "gradients": 0, "hvps": 0}

    # -- to override -------------------------------------------------------------------------
    def _check_group(self, group: dict) -> None:
        """Validate a group's hyperparameters (called for every group, also added ones)."""

    def _needs_graph(self) -> bool:
        """Whether the coming step takes Hessian-vector products."""
        return not self.hvp_free

    def _needs_output(self) -> bool:
        """Whether the coming step needs the model output returned by the closure."""
        return False

    def _prepare(self, ctx: StepContext) -> Any:  # pragma: no cover - abstract
        return None

    def _apply(self, ctx: StepContext, plan: Any) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- helpers -----------------------------------------------------------------------------
    def add_param_group(self, param_group: dict) -> None:
        """Add a parameter group (a dict with ``"params"`` and optional hyperparameters).

        The group's hyperparameters are validated like the constructor's.
        """
        super().add_param_group(param_group)
        if hasattr(self, "_generator"):
            group = self.param_groups[-1]
            if "lr" in group:
                check_nonneg("lr", group["lr"])
            self._check_group(group)

    def _own_params(self) -> list[Tensor]:
        return [p for g in self.param_groups for p in g["params"] if p.requires_grad]

    def _stepped_params(
        self,
        ctx: StepContext,
        plan: Sequence[Any] | None = None,
        *,
        counters: Sequence[str] = ("step",),
        buffers: Sequence[str] = (),
    ) -> Iterator[tuple[dict, Tensor, dict, Any]]:
        """The per-parameter loop of an element-wise update rule.

        Yields ``(group, p, state, item)`` for every parameter that received a gradient on
        this step, group by group. A parameter's state starts (on its first step) with the
        ``counters`` at 0 and the ``buffers`` as zeros like ``p``; ``item`` is its entry of
        ``plan`` (one entry per ``ctx.params``), or ``None`` without a plan.
        """
        items = dict(zip(map(id, ctx.params), plan)) if plan is not None else {}
        for group in self.param_groups:
            for p in group["params"]:
                if not ctx.has(p):
                    continue
                state = self.state[p]
                if len(state) == 0:
                    for name in counters:
                        state[name] = 0
                    for name in buffers:
                        state[name] = torch.zeros_like(p)
                yield group, p, state, items.get(id(p))

    counts: dict
    """Cumulative work: ``steps``, ``loss_evals``, ``gradients`` and ``hvps`` (products)."""

    @property
    def num_steps(self) -> int:
        """Number of steps taken so far."""
        return self._num_steps

    # -- the step ----------------------------------------------------------------------------
    def step(self, closure: Closure | None = None) -> Tensor | None:
        """Take one step.

        Parameters
        ----------
        closure
            Recomputes and returns the loss (or ``(loss, output)``) WITHOUT calling backward.
            Without a closure the legacy path reads ``p.grad`` (which must carry a graph, from
            ``loss.backward(create_graph=True)``, when the method needs curvature) and warns
            once.

        Returns
        -------
        Tensor or None
            The loss (detached) when a closure was given.
        """
        params = self._own_params()
        if closure is None:
            return self._legacy_step(params)
        loss, output = evaluate_closure(closure)
        needs_graph = self._needs_graph()
        grads = take_gradient(loss, params, create_graph=needs_graph)
        ctx = self._context(loss, output, params, grads, needs_graph, closure)
        value = ctx.loss_value
        del loss, output, grads  # from here on only ctx holds the graph; release() drops it
        plan = self._prepare(ctx) if ctx.params else None
        self._finish(ctx, plan)
        return value

    def _legacy_context(self, params: list[Tensor]) -> StepContext:
        """The context of a step without a closure: gradients from ``p.grad``."""
        if self.process_group is not None:
            raise ClosureError(
                f"{type(self).__name__} with a process_group needs a closure: the legacy path "
                "cannot average curvature over ranks. Call opt.step(closure)."
            )
        if self.requires_closure:
            raise ClosureError(
                f"{type(self).__name__} re-evaluates the loss and needs a closure: call "
                "opt.step(closure) with a closure that returns the loss (no backward)."
            )
        if self._needs_output():
            raise ClosureError(
                f"{type(self).__name__} needs the model output on this step: call "
                "opt.step(closure) with a closure that returns (loss, output)."
            )
        used = [p for p in params if p.grad is not None]
        grads = [p.grad for p in used]
        has_graph = any(g.requires_grad for g in grads)
        if not self.hvp_free and not self._legacy_warned:
            warnings.warn(
                f"{type(self).__name__}.step() without a closure uses the legacy path "
                "(loss.backward(create_graph=True); opt.step()); prefer "
                "opt.step(closure) with a closure that returns the loss.",
                LegacyStepWarning,
                stacklevel=_user_stacklevel(),
            )
            self._legacy_warned = True
        return StepContext(None, None, used, grads, has_graph, None)

    def _legacy_step(self, params: list[Tensor]) -> None:
        ctx = self._legacy_context(params)
        try:
            plan = self._prepare(ctx) if ctx.params else None
        finally:
            self._detach_grads(ctx.params)
        self._finish(ctx, plan)
        return None

    @staticmethod
    def _detach_grads(params: Sequence[Tensor]) -> None:
        for p in params:
            if p.grad is not None and p.grad.requires_grad:
                p.grad = p.grad.detach()

    def _context(self, loss, output, params, grads, has_graph, closure) -> StepContext:
        used, used_grads = [], []
        for p, g in zip(params, grads):
            if g is None:
                p.grad = None
                continue
            used.append(p)
            used_grads.append(g)
            p.grad = g.detach()
        group = self.process_group
        if group is not None:
            return self._distributed_context(loss, output, used, used_grads, has_graph, closure)
        if self._needs_output() and output is None:
            raise ClosureError(
                f"{type(self).__name__} needs the model output on this step: make the closure "
                "return (loss, output)."
            )
        re_eval = loss_only_closure(closure) if closure is not None else None
        return StepContext(loss, output, used, used_grads, has_graph, re_eval)

    def _distributed_context(self, loss, output, used, used_grads, has_graph, closure):
        """A step context whose gradients, products and loss values are averaged over the
        process group (each rank's closure computes the mean loss of its own shard; shards of
        equal size make the average the full-batch mean, as under DDP)."""
        group = self.process_group
        world = dist.get_world_size(group)

        def reduce(tensors: list[Tensor]) -> None:
            if not tensors:
                return
            buf = torch.cat([t.detach().reshape(-1) for t in tensors])
            dist.all_reduce(buf, group=group)
            buf /= world
            for t, c in zip(tensors, torch.split(buf, [t.numel() for t in tensors])):
                with torch.no_grad():
                    t.copy_(c.view_as(t))

        global_grads = [g.detach().clone() for g in used_grads]
        reduce(global_grads)
        for p, g in zip(used, global_grads):
            p.grad = g
        if self._needs_output() and output is None:
            raise ClosureError(
                f"{type(self).__name__} needs the model output on this step: make the closure "
                "return (loss, output)."
            )
        value = None
        if loss is not None:
            value = loss.detach().clone().reshape(1)
            reduce([value])
            value = value[0]
        re_eval = None
        if closure is not None:
            inner = loss_only_closure(closure)

            def re_eval() -> Tensor:
                v = inner().reshape(1).clone()
                reduce([v])
                return v[0]

        ctx = StepContext(loss, output, used, used_grads, has_graph, re_eval, loss_value=value)
        ctx.global_grads, ctx.reduce, ctx.world_size = global_grads, reduce, world
        return ctx

    def _finish(self, ctx: StepContext, plan: Any) -> None:
        ctx.release()
        if ctx.params:
            with torch.no_grad():
                self._apply(ctx, plan)
        self._num_steps += 1
        c = self.counts
        c["steps"] += 1
        c["loss_evals"] += ctx.counts["loss_evals"] + (ctx.loss_value is not None)
        c["gradients"] += ctx.counts["gradients"] + 1
        c["hvps"] += ctx.counts["hvps"]

    def gradient_equivalents(self, *, hvp_cost: float = 2.0, loss_cost: float = 0.5) -> float:
        """Work so far in units of one gradient (a forward and a backward pass).

        A gradient counts 1, a Hessian-vector product ``hvp_cost`` (a double backward is about
        two gradients; a Gauss-Newton product likewise) and a loss-only evaluation (line
        searches) ``loss_cost``. The closure's own evaluation is part of its gradient.
        """
        c = self.counts
        extra_evals = c["loss_evals"] - min(c["loss_evals"], c["gradients"])
        return c["gradients"] + hvp_cost * c["hvps"] + loss_cost * extra_evals

    # -- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        sd = super().state_dict()
        sd["curvlab"] = {
            "num_steps": self._num_steps,
            "counts": dict(self.counts),
            "generator_state": self._generator.get_state(),
            "seed": self.seed,
        }
        return sd

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        extra = state_dict.pop("curvlab", None)
        super().load_state_dict(state_dict)
        if extra is not None:
            self._num_steps = int(extra["num_steps"])
            self.counts = dict(extra.get("counts", self.counts))
            self._generator.set_state(extra["generator_state"].clone().cpu())
            self.seed = extra.get("seed", self.seed)


class GroupStepOptimizer(CurvatureOptimizer):
    """A method that computes one step per parameter group, from the group's gradient.

    Subclasses implement ``_group_step(ctx, group, params, g)``, which returns the flat step
    of the group (``g`` is its flat gradient) and a dict of diagnostics; the diagnostics of
    the last step are :attr:`last_info` (one dict per group, empty for a group without a
    gradient). The steps are added to the parameters in ``_apply``.
    """

    def __init__(self, params, defaults: dict, **kwargs: Any):
        self.last_info: list[dict] = []
        super().__init__(params, defaults, **kwargs)

    def _group_step(
        self, ctx: StepContext, group: dict, params: list[Tensor], g: Tensor
    ) -> tuple[Tensor, dict]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _prepare(self, ctx: StepContext) -> list:
        plan, info = [], []
        for group in self.param_groups:
            params = [p for p in group["params"] if ctx.has(p)]
            if not params:
                plan.append(None)
                info.append({})
                continue
            g = flat([ctx.grad_of(p).detach() for p in params])
            step, stats = self._group_step(ctx, group, params, g)
            plan.append((params, split_like(step, params)))
            info.append(stats)
        self.last_info = info
        return plan

    def _apply(self, ctx: StepContext, plan: list) -> None:
        for item in plan:
            if item is None:
                continue
            for p, delta in zip(*item):
                p.add_(delta)
