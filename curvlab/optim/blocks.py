"""Several optimizers on disjoint parameter blocks, stepped with one closure."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from .._public import public_dir
from ._base import CurvatureOptimizer
from ._closure import (
    ClosureError,
    autocast_as,
    autocast_state,
    evaluate_closure,
    full_precision,
    step,
    take_gradient,
)
from ._closure import trainable_params as _params_of

__all__ = ["BlockOptimizer", "compose"]
__dir__ = public_dir(globals())


class BlockOptimizer:
    r"""Step several optimizers, each owning a disjoint block of parameters, with one closure.

    ``step(closure)`` evaluates the closure once, takes ONE gradient for all blocks (with
    ``create_graph=True`` only if some member takes Hessian-vector products on this step) and
    hands each member its block:

    1. every curvlab member prepares its step on the shared graph (Hessian-vector products on
       its own block: the diagonal block of the Hessian, e.g. :math:`H_{QQ}` for the
       :math:`Q` factor), before any parameter moves;
    2. the graph is released;
    3. the members update their parameters in the order given. Members that are ordinary
       :class:`torch.optim.Optimizer` (Adam, SGD, ...) receive ``p.grad`` and ``step()``;
       :class:`torch.optim.LBFGS` receives a closure that re-evaluates the loss and the
       gradient of its block. Members that re-evaluate the loss (LBFGS, the line search of
       :class:`NewtonCG`) see the blocks updated before them.

    Without a closure (legacy path) each member reads ``p.grad`` as its own ``step()`` would.

    Parameters
    ----------
    optimizers
        The member optimizers; their parameters must be disjoint.

    Examples
    --------
    Adam on the body of a network and a damped Newton step on its last layer (study A):

    >>> import torch
    >>> from torch import nn
    >>> from curvlab.optim import BlockOptimizer, DampedNewton
    >>> model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    >>> X, y = torch.randn(32, 4), torch.randn(32, 1)
    >>> opt = BlockOptimizer([
    ...     torch.optim.Adam(model[0].parameters(), lr=1e-2),
    ...     DampedNewton(model[2].parameters(), variant="gradreg", L=0.1, solver="dense"),
    ... ])
    >>> loss = opt.step(lambda: nn.functional.mse_loss(model(X), y))
    """

    def __init__(self, optimizers: Sequence[Optimizer]):
        optimizers = list(optimizers)
        if not optimizers:
            raise ValueError("BlockOptimizer needs at least one optimizer.")
        if any(getattr(o, "process_group", None) is not None for o in optimizers):
            raise ValueError(
                "BlockOptimizer does not average gradients over a process_group yet: under "
                "DDP, step each curvlab optimizer with its own closure instead."
            )
        seen: dict[int, int] = {}
        for i, opt in enumerate(optimizers):
            if not isinstance(opt, Optimizer):
                raise TypeError(
                    f"member {i} is a {type(opt).__name__}, not a torch.optim.Optimizer."
                )
            for p in _params_of(opt):
                if id(p) in seen:
                    raise ValueError(
                        f"a parameter of shape {tuple(p.shape)} belongs to members "
                        f"{seen[id(p)]} and {i}: the blocks must be disjoint."
                    )
                seen[id(p)] = i
        self.optimizers = optimizers

    # -- torch.optim-like surface --------------------------------------------------------------
    @property
    def param_groups(self) -> list[dict]:
        """The param groups of all members, in order."""
        return [g for opt in self.optimizers for g in opt.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {"optimizers": [opt.state_dict() for opt in self.optimizers]}

    def load_state_dict(self, state_dict: dict) -> None:
        states = state_dict.get("optimizers")
        if states is None or len(states) != len(self.optimizers):
            raise ValueError(
                "state_dict does not match: expected the state of "
                f"{len(self.optimizers)} optimizers from BlockOptimizer.state_dict()."
            )
        for opt, st in zip(self.optimizers, states):
            opt.load_state_dict(st)

    def __repr__(self) -> str:
        inner = ", ".join(type(o).__name__ for o in self.optimizers)
        return f"BlockOptimizer([{inner}])"

    # -- the step ------------------------------------------------------------------------------
    def step(self, closure: Callable[[], Any] | None = None) -> Tensor | None:
        """One step of every member; returns the loss (detached) when a closure is given."""
        if closure is None and getattr(self, "_step_taken", False):
            self._step_taken = False  # taken with a closure by curvlab.optim.hf's adapter
            return None
        if closure is None:
            return self._legacy_step()
        # the closure runs in the caller's autocast regions, the optimizers' own arithmetic
        # (gradients, products, solves, updates) outside them
        state = autocast_state()
        with full_precision():
            return self._step_with(closure, state)

    def _step_with(self, closure, autocast) -> Tensor:
        with autocast_as(autocast):
            loss, output = evaluate_closure(closure)
        curv = [o for o in self.optimizers if isinstance(o, CurvatureOptimizer)]
        for o in curv:
            o._autocast = autocast
        needs_graph = any(o._needs_graph() for o in curv)
        blocks = [_params_of(o) for o in self.optimizers]
        all_params = [p for b in blocks for p in b]
        grads = take_gradient(loss, all_params, create_graph=needs_graph)
        gmap = {id(p): g for p, g in zip(all_params, grads)}
        del grads

        ctxs, plans = {}, {}
        for i, (opt, block) in enumerate(zip(self.optimizers, blocks)):
            bgrads = [gmap[id(p)] for p in block]
            if isinstance(opt, CurvatureOptimizer):
                ctx = opt._context(loss, output, block, bgrads, needs_graph, closure)
                ctxs[i] = ctx
                plans[i] = opt._prepare(ctx) if ctx.params else None
            else:
                for p, g in zip(block, bgrads):
                    p.grad = None if g is None else g.detach()
        for ctx in ctxs.values():
            ctx.release()
        del gmap
        loss_value = loss.detach()
        del loss, output

        for i, opt in enumerate(self.optimizers):
            if i in ctxs:
                ctxs[i].loss_is_current = i == 0
                opt._finish(ctxs[i], plans[i])
                opt._opt_called = True  # what torch's LR schedulers check after step()
            elif isinstance(opt, torch.optim.LBFGS):
                with autocast_as(autocast):  # re-evaluates the loss and its block's gradient
                    step(opt, closure)
            else:
                opt.step()
        return loss_value

    def _legacy_step(self) -> None:
        with full_precision():
            self._legacy_steps()

    def _legacy_steps(self) -> None:
        ctxs, plans = {}, {}
        for i, opt in enumerate(self.optimizers):
            if isinstance(opt, CurvatureOptimizer):
                ctx = opt._legacy_context(_params_of(opt))
                ctxs[i] = ctx
                try:
                    plans[i] = opt._prepare(ctx) if ctx.params else None
                finally:
                    opt._detach_grads(ctx.params)
            elif isinstance(opt, torch.optim.LBFGS):
                raise ClosureError("a LBFGS member needs a closure: call step(closure).")
        # break the parameter <-> gradient cycle of backward(create_graph=True) everywhere
        for opt in self.optimizers:
            CurvatureOptimizer._detach_grads(_params_of(opt))
        for i, opt in enumerate(self.optimizers):
            if i in ctxs:
                opt._finish(ctxs[i], plans[i])
            else:
                opt.step()
        return None


def compose(*optimizers: Optimizer) -> BlockOptimizer:
    """Shorthand for ``BlockOptimizer([*optimizers])``.

    Examples
    --------
    >>> import torch
    >>> from curvlab.optim import compose, AdaHessian
    >>> a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    >>> opt = compose(torch.optim.SGD([a], lr=0.1), AdaHessian([b]))
    >>> loss = opt.step(lambda: (a ** 2).sum() + (b ** 4).sum())
    """
    return BlockOptimizer(list(optimizers))
