"""The base classes of the curvlab optimizers.

Each optimizer is split into two phases so that several of them can share one graph (see
:class:`~curvlab.optim.BlockOptimizer`):

``_prepare(ctx)``
    all work that needs the graph (Hessian-vector products, linear solves); parameters are
    not modified.
``_apply(ctx, plan)``
    the parameter update, under ``torch.no_grad()``; may re-evaluate the closure (line
    searches) but never uses the graph.

The closure protocol lives in :mod:`curvlab.optim._closure`, the step context and its
curvature products in :mod:`curvlab.optim._context`.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from torch.optim import Optimizer

from .. import _random
from .._autograd import curvature_pass
from .._checks import check_nonneg, check_positive
from .._distributed import RemoteRankError, all_reduce_checked
from .._params import flatten, unflatten
from ._closure import (
    Closure,
    ClosureError,
    LegacyStepWarning,
    NoGradientWarning,
    autocast_state,
    evaluate_closure,
    full_precision,
    loss_of_frozen_step,
    loss_only_closure,
    take_gradient,
    user_stacklevel,
)
from ._context import StepContext

__all__ = ["CurvatureOptimizer", "GroupStepOptimizer"]

#: attributes of torch's Optimizer that its own ``__setstate__`` recreates (the hooks): not
#: copied, as torch does not copy them either
_TORCH_HOOKS = frozenset(
    {
        "_optimizer_step_pre_hooks",
        "_optimizer_step_post_hooks",
        "_optimizer_state_dict_pre_hooks",
        "_optimizer_state_dict_post_hooks",
        "_optimizer_load_state_dict_pre_hooks",
        "_optimizer_load_state_dict_post_hooks",
    }
)


def _copied_items(opt: Optimizer, skip: frozenset | set = frozenset()) -> dict[str, Any]:
    """The instance attributes of ``opt`` that a copy keeps: all but torch's hooks and the
    instance attributes that shadow a method of the class (the ``step`` wrapper an LR
    scheduler installs holds a reference to the original optimizer: a copy must not call
    it; torch's ``__setstate__`` patches the copy's own ``step``)."""
    cls = type(opt)
    return {
        k: v
        for k, v in opt.__dict__.items()
        if k not in _TORCH_HOOKS and k not in skip and not callable(getattr(cls, k, None))
    }


def _generator_like(gen: torch.Generator) -> torch.Generator:
    """A new generator on the device of ``gen``, in the same state (an independent copy)."""
    new = torch.Generator(device=gen.device)
    new.set_state(gen.get_state().clone())
    return new


class CurvatureOptimizer(Optimizer):
    """Base class of the curvlab optimizers: the closure contract and the legacy path.

    Subclasses implement ``_needs_graph`` (does the next step take Hessian-vector
    products?), ``_prepare`` (graph work, no parameter change) and ``_apply`` (the
    update). The base class evaluates the closure, takes the gradient, writes ``p.grad``,
    frees the graph, counts steps, and saves the probe generator in the ``state_dict``.

    Parameters
    ----------
    params
        Parameters or parameter groups, as for any :class:`torch.optim.Optimizer`
        (an iterable of tensors, of ``(name, tensor)`` pairs from ``named_parameters()``, or
        of dicts).
    defaults
        Default hyperparameters of a group. They are validated (``_check_group``) before
        the parameters are looked at, so a bad value is reported as such even when
        ``params`` is empty or ``None``. ``lr`` may be a one-element tensor, as in torch.
    seed
        Seed of the probe generator (an int, a :class:`torch.Generator` or ``None`` for fresh
        entropy). The generator lives on the device of the first parameter.
    process_group
        ``torch.distributed`` group for data-parallel training (DDP): each rank's closure
        returns the mean loss of its own shard (equal shard sizes); gradients, curvature
        products and loss values are averaged over the group explicitly (DDP does not
        synchronize double backward), probes are identical on every rank (the same seed;
        ``seed=None`` takes rank 0's), so every rank takes the same step. Every reduction
        carries an error flag: when a rank fails during a step, the other ranks raise
        :class:`curvlab.RemoteRankError` instead of waiting forever.
    max_grad_norm
        Clip the gradient by its total 2-norm before the update, as
        :func:`torch.nn.utils.clip_grad_norm_` between ``backward`` and ``step`` would
        (default ``None``: no clipping). The gradient of all the optimizer's parameters is
        scaled by ``min(1, max_grad_norm / (norm + 1e-6))``; the scaled gradient is what the
        update uses and what ``p.grad`` holds after the step. Curvature (Hessian, Gauss-Newton
        and Sophia-G's sampled-label products) is not scaled. The norm before clipping (a
        tensor, as ``clip_grad_norm_`` returns) is ``opt.last_grad_norm``; in data-parallel
        steps it is the norm of the averaged gradient. May be changed between steps
        (``opt.max_grad_norm = 1.0``).

    Notes
    -----
    Copies: ``copy.deepcopy(opt)`` copies every attribute a step needs (counters, seed,
    the probe generator's state, per-parameter state) and steps exactly as the original
    would, bit for bit; the copy shares the original's ``process_group`` (a process group
    cannot be copied). Pickling (``torch.save(opt)``) keeps the same attributes except the
    process group, which cannot be pickled: it is dropped with a warning, and the unpickled
    optimizer refuses to step until ``opt.process_group`` is set again (to a group, or to
    ``None`` for single-process steps). Hooks registered on the optimizer are not copied,
    as in torch.
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
        max_grad_norm: float | None = None,
    ):
        self._validate_group(dict(defaults))  # before torch looks at params
        if max_grad_norm is not None:
            check_positive(max_grad_norm, "max_grad_norm")
        self.max_grad_norm = max_grad_norm
        self.last_grad_norm: Tensor | None = None
        self._autocast: tuple = ()  # the caller's autocast regions at the current step
        _random.check_seed(seed)
        self._process_group_lost = False
        super().__init__(params, defaults)  # validates every group (add_param_group)
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
        self._generator, used = _random.make_generator(seed, device, share=True)
        self.seed = int(self._generator.initial_seed()) if used is None else used
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
    def _validate_group(self, group: dict) -> None:
        if "lr" in group:
            check_nonneg(group["lr"], "lr", tensor_ok=True)
        self._check_group(group)

    def add_param_group(self, param_group: dict) -> None:
        """Add a parameter group (a dict with ``"params"`` and optional hyperparameters).

        The group's hyperparameters are validated like the constructor's, before the group
        is added (a group with a bad value is not added).
        """
        if isinstance(param_group, dict):
            candidate = {**self.defaults, **{k: v for k, v in param_group.items() if k != "params"}}
            self._validate_group(candidate)
        super().add_param_group(param_group)
        self._check_group(self.param_groups[-1])  # normalizations (aliases) on the group itself

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

    @property
    def process_group(self):
        """The ``torch.distributed`` group of data-parallel steps (``None``: one process)."""
        return self._process_group

    @process_group.setter
    def process_group(self, group) -> None:
        self._process_group = group
        self._process_group_lost = False

    # -- copies and pickling -----------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        """Everything a step needs (pickling): the generator as its state, no process group,
        no hooks (as in torch)."""
        state = _copied_items(self)
        gen = state.pop("_generator", None)
        if gen is not None:
            state["_generator_state"] = (str(gen.device), gen.get_state())
        if state.get("_process_group") is not None:
            warnings.warn(
                f"{type(self).__name__} is pickled without its process_group (a process group "
                "cannot be pickled): set opt.process_group on the loaded optimizer before "
                "stepping it.",
                UserWarning,
                stacklevel=2,
            )
            state["_process_group"] = None
            state["_process_group_lost"] = True
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        saved = state.pop("_generator_state", None)
        if saved is not None:
            device, gen_state = saved
            gen = torch.Generator(device=device)
            gen.set_state(gen_state)
            state["_generator"] = gen
        super().__setstate__(state)

    def __deepcopy__(self, memo: dict) -> CurvatureOptimizer:
        """A copy that steps as the original would, bit for bit (its generator is an
        independent copy in the same state); the process group is shared, hooks are not
        copied (as in torch)."""
        cls = type(self)
        new = cls.__new__(cls)
        memo[id(self)] = new
        state = copy.deepcopy(_copied_items(self, {"_generator", "_process_group"}), memo)
        if "_generator" in self.__dict__:
            state["_generator"] = _generator_like(self._generator)
        state["_process_group"] = self.__dict__.get("_process_group")
        Optimizer.__setstate__(new, state)
        return new

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
            The loss (detached) when a closure was given. When no parameter of the optimizer
            requires grad (a frozen block) the closure is evaluated, nothing is updated and
            its loss is returned, as torch's optimizers do.
        """
        if self._process_group_lost:
            raise RuntimeError(
                f"this {type(self).__name__} was unpickled without its process_group (a "
                "process group cannot be pickled): set opt.process_group = <group> (or None "
                "for single-process steps) before stepping."
            )
        if closure is None and getattr(self, "_step_taken", False):
            # the step of this iteration was taken with a closure by an adapter
            # (curvlab.optim.hf.CurvatureTrainer.training_step): the loop's own step() is a no-op
            self._step_taken = False
            return None
        params = self._own_params()
        if not params:  # a frozen block: nothing to do, as in torch
            return None if closure is None else loss_of_frozen_step(closure)
        if closure is None:
            return self._guarded(self._legacy_step, params)
        return self._guarded(self._closure_step, params, closure)

    def _guarded(self, fn, *args):
        """Run ``fn``; in data-parallel steps a local failure is reported to the other ranks
        through the error flag of the reductions, so that none of them hangs."""
        group = self.process_group
        if group is None:
            return fn(*args)
        try:
            return fn(*args)
        except RemoteRankError:
            raise
        except Exception as err:  # the healthy ranks wait in a reduction: raise there too
            all_reduce_checked([torch.zeros(1, device=self._generator.device)], err, group)
            raise  # pragma: no cover - all_reduce_checked raised err

    def _closure_step(self, params: list[Tensor], closure: Closure) -> Tensor:
        needs_graph = self._needs_graph()
        # a step with curvature (Hessian products through the gradient's graph, or Gauss-Newton
        # products through the output) runs its passes like the operators' products: math
        # attention backend, no fused fast paths
        curvature = needs_graph or self._needs_output()
        # mixed precision: the closure runs in the caller's autocast regions (the forward in
        # low precision, as recorded in the graph); the gradient, the curvature products, the
        # solves and the update run outside autocast, so the optimizer's bookkeeping stays in
        # the parameters' dtype; re-evaluations (line searches) re-enter the caller's regions
        self._autocast = autocast_state()
        with curvature_pass() if curvature else nullcontext():
            loss, output = evaluate_closure(closure)
            with full_precision():
                grads = take_gradient(loss, params, create_graph=needs_graph)
                ctx = self._context(loss, output, params, grads, needs_graph, closure)
                value = ctx.loss_value
                del loss, output, grads  # from now on only ctx holds the graph (release drops it)
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
        if not used:
            # torch.optim skips parameters without a gradient; here none has one, which is
            # almost always a missing backward: say so on every such step (not only once)
            warnings.warn(
                f"{type(self).__name__}.step() without a closure found no gradient on any of "
                "its parameters, so it did nothing: call loss.backward(create_graph=True) "
                "before opt.step(), or use opt.step(closure) with a closure that returns the "
                "loss (no backward).",
                NoGradientWarning,
                stacklevel=user_stacklevel(),
            )
        grads = [p.grad for p in used]
        has_graph = any(g.requires_grad for g in grads)
        if not self.hvp_free and not self._legacy_warned:
            warnings.warn(
                f"{type(self).__name__}.step() without a closure uses the legacy path "
                "(loss.backward(create_graph=True); opt.step()); prefer "
                "opt.step(closure) with a closure that returns the loss.",
                LegacyStepWarning,
                stacklevel=user_stacklevel(),
            )
            self._legacy_warned = True
        return self._clip_gradients(StepContext(None, None, used, grads, has_graph, None))

    def _legacy_step(self, params: list[Tensor]) -> None:
        with full_precision():
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
        re_eval = self._re_evaluation(closure)
        return self._clip_gradients(StepContext(loss, output, used, used_grads, has_graph, re_eval))

    def _distributed_context(self, loss, output, used, used_grads, has_graph, closure):
        """A step context whose gradients, products and loss values are averaged over the
        process group (each rank's closure computes the mean loss of its own shard; shards of
        equal size make the average the full-batch mean, as under DDP). Every reduction is
        :func:`curvlab._distributed.all_reduce_checked` (an error flag first)."""
        group = self.process_group
        world = dist.get_world_size(group)

        def reduce(tensors: list[Tensor]) -> None:
            if not tensors:
                return
            buf = torch.cat([t.detach().reshape(-1) for t in tensors])
            all_reduce_checked([buf], None, group)
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
            inner = self._re_evaluation(closure)

            def re_eval() -> Tensor:
                v = inner().reshape(1).clone()
                reduce([v])
                return v[0]

        ctx = StepContext(loss, output, used, used_grads, has_graph, re_eval, loss_value=value)
        ctx.global_grads, ctx.reduce, ctx.world_size = global_grads, reduce, world
        return self._clip_gradients(ctx)

    def _re_evaluation(self, closure):
        """The loss-only closure of line searches, in the autocast regions of the step."""
        if closure is None:
            return None
        return loss_only_closure(closure, getattr(self, "_autocast", ()))

    def _clip_gradients(self, ctx: StepContext) -> StepContext:
        """Clip the gradient the update uses by its total norm (``max_grad_norm``), with the
        arithmetic of :func:`torch.nn.utils.clip_grad_norm_`; ``p.grad`` gets the clipped
        gradient. The graph-carrying gradients (curvature products) are left as they are."""
        max_norm = getattr(self, "max_grad_norm", None)
        if max_norm is None or not ctx.params:
            return ctx
        grads = [ctx.grad_of(p).detach() for p in ctx.params]
        total = torch.nn.utils.get_total_norm(grads)  # torch's norm, as clip_grad_norm_
        self.last_grad_norm = total
        coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
        clipped = [g * coef.to(g.device) for g in grads]
        ctx.update_grads = clipped
        for p, g in zip(ctx.params, clipped):
            p.grad = g
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
            g = flatten([ctx.grad_of(p).detach() for p in params])
            step, stats = self._group_step(ctx, group, params, g)
            plan.append((params, unflatten(step, params)))
            info.append(stats)
        self.last_info = info
        return plan

    def _apply(self, ctx: StepContext, plan: list) -> None:
        for item in plan:
            if item is None:
                continue
            for p, delta in zip(*item):
                p.add_(delta)
