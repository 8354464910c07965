"""The closure protocol shared by every curvlab optimizer, and :func:`step` for any optimizer.

``loss = opt.step(closure)``: the closure recomputes the loss (or ``(loss, output)``) and does
*not* call ``backward``. The optimizer evaluates it once, takes the gradient itself with
:func:`torch.autograd.grad`, writes a detached ``p.grad``, and drops every reference to the
graph before returning. This module holds the pieces of that protocol that do not depend on
an optimizer: checking what a closure returned, evaluating it, re-evaluating it without a
graph (line searches), taking the gradient with a clear error when the closure already ran
backward, and the one function that steps *any* optimizer with such a closure.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

__all__ = [
    "ClosureError",
    "LegacyStepWarning",
    "NoGradientWarning",
    "step",
    "split_closure_output",
    "evaluate_closure",
    "loss_only_closure",
    "take_gradient",
]

Closure = Callable[[], Any]


class ClosureError(ValueError, TypeError, RuntimeError):
    """A closure is missing, returns something other than a scalar loss, or calls backward.

    It derives from :class:`ValueError`, :class:`TypeError` and :class:`RuntimeError`, so code
    that catches any of the three (as the original optimizers' users do) keeps working.
    """


class NoGradientWarning(UserWarning):
    """``opt.step()`` without a closure found no gradient on any parameter and did nothing
    (usually a missing ``loss.backward(create_graph=True)``)."""


class LegacyStepWarning(UserWarning):
    """``opt.step()`` was called without a closure on a method that uses curvature.

    The legacy path (``loss.backward(create_graph=True); opt.step()``) works, but the graph
    that ``backward(create_graph=True)`` builds lives in ``p.grad`` until the optimizer
    detaches it, and a method with ``update_each > 1`` builds it on every step even when it
    does not need it. Pass a closure to avoid both.
    """


def user_stacklevel() -> int:
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
            "optimizer's parameters, outside torch.no_grad(), and return it without calling "
            "backward. A closure that runs backward itself and returns a detached loss (as "
            "PyTorch Lightning's automatic optimization does) cannot give curvature: use "
            "curvlab.optim.lightning.CurvatureModule, or manual optimization with "
            "opt.step(lambda: loss)."
        )
    return out.reshape(()), output


def evaluate_closure(closure: Closure) -> tuple[Tensor, Any]:
    """Call ``closure`` with gradients enabled and check what it returned."""
    if not callable(closure):
        raise ClosureError(f"closure must be callable, got {type(closure).__name__}.")
    with torch.enable_grad():
        return split_closure_output(closure())


def loss_of_frozen_step(closure: Closure) -> Any:
    """Evaluate ``closure`` for an optimizer none of whose parameters requires grad, and
    return its loss (detached when it is a tensor), as torch's optimizers do on such a
    step: nothing is updated."""
    if not callable(closure):
        raise ClosureError(f"closure must be callable, got {type(closure).__name__}.")
    with torch.enable_grad():
        out = closure()
    if isinstance(out, (tuple, list)) and len(out) == 2:
        out = out[0]
    return out.detach() if isinstance(out, Tensor) else out


#: device types whose torch.autocast state a step saves and restores
_AUTOCAST_DEVICES = ("cpu", "cuda")

AutocastState = tuple[tuple[str, torch.dtype], ...]


def autocast_state() -> AutocastState:
    """The enabled :class:`torch.autocast` regions of the caller: ``(device_type, dtype)``."""
    return tuple(
        (d, torch.get_autocast_dtype(d)) for d in _AUTOCAST_DEVICES if torch.is_autocast_enabled(d)
    )


@contextmanager
def autocast_as(state: AutocastState) -> Iterator[None]:
    """Re-enter the autocast regions of ``state`` (as :func:`autocast_state` saved them)."""
    with ExitStack() as stack:
        for device, dtype in state:
            stack.enter_context(torch.autocast(device, dtype=dtype))
        yield


@contextmanager
def full_precision() -> Iterator[None]:
    """Leave every enabled autocast region: the optimizer's own arithmetic (gradients,
    curvature products through the recorded graph, solves, the update) runs in the dtypes
    of the parameters and of the graph, never in autocast's lower precision."""
    with ExitStack() as stack:
        for device, _ in autocast_state():
            stack.enter_context(torch.autocast(device, enabled=False))
        yield


def loss_only_closure(closure: Closure, autocast: AutocastState = ()) -> Callable[[], Tensor]:
    """A closure for re-evaluations (line searches): the loss value, no graph, under the
    autocast regions ``autocast`` (those of the step's first evaluation)."""

    def f() -> Tensor:
        with torch.no_grad(), autocast_as(autocast):
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


def trainable_params(opt: Optimizer) -> list[Tensor]:
    """The parameters of ``opt`` that require grad, group by group."""
    return [p for g in opt.param_groups for p in g["params"] if p.requires_grad]


def gradient_closure(closure: Closure, params: Sequence[Tensor]) -> Callable[[], Tensor]:
    """A torch-style closure from a curvlab-style one: evaluates the loss, writes the gradient
    of ``params`` (and only theirs) to ``p.grad`` and returns the loss, detached.

    The gradient is taken with :func:`torch.autograd.grad`, so ``p.grad`` of tensors outside
    ``params`` is left untouched (no ``zero_grad`` is needed, nothing accumulates), and a
    parameter that does not enter the loss gets ``p.grad = None``.
    """
    params = list(params)

    def f() -> Tensor:
        if not params:
            return loss_of_frozen_step(closure)
        loss, _ = evaluate_closure(closure)
        grads = take_gradient(loss, params, create_graph=False)
        for p, g in zip(params, grads):
            p.grad = None if g is None else g.detach()
        return loss.detach()

    return f


def step(opt: Any, closure: Closure) -> Tensor:
    """One optimization step of ``opt`` under curvlab's closure contract, for any optimizer.

    ``closure`` recomputes and returns the loss (or ``(loss, output)``) and does **not** call
    ``backward``. A curvlab optimizer (:class:`~curvlab.optim.CurvatureOptimizer`) and a
    :class:`~curvlab.optim.BlockOptimizer` take it as it is (``opt.step(closure)``). Any other
    :class:`torch.optim.Optimizer` (SGD, Adam, :class:`~torch.optim.LBFGS`, ...) receives a
    torch-style closure that evaluates the loss and writes the gradient of its own
    parameters to ``p.grad`` (with :func:`torch.autograd.grad`: no ``zero_grad`` needed and
    gradients of other tensors are left alone); L-BFGS may call it several times.

    Parameters
    ----------
    opt
        A curvlab optimizer, a :class:`~curvlab.optim.BlockOptimizer` or a
        :class:`torch.optim.Optimizer`.
    closure
        Returns the loss (a scalar tensor with its graph), or ``(loss, output)``.

    Returns
    -------
    Tensor
        The loss at the parameters before the step, detached.

    Raises
    ------
    TypeError
        If ``opt`` is none of the above.
    ClosureError
        If the closure does not return a scalar loss that requires grad.

    Examples
    --------
    The same training loop for a first-order and a second-order optimizer:

    >>> import torch
    >>> from curvlab.optim import AdaHessian, step
    >>> X, y = torch.randn(16, 3), torch.randn(16, 1)
    >>> for make in (lambda ps: torch.optim.SGD(ps, lr=0.1), lambda ps: AdaHessian(ps)):
    ...     model = torch.nn.Linear(3, 1)
    ...     opt = make(model.parameters())
    ...     for _ in range(3):
    ...         loss = step(opt, lambda: torch.nn.functional.mse_loss(model(X), y))
    >>> loss.requires_grad
    False
    """
    from ._base import CurvatureOptimizer
    from .blocks import BlockOptimizer

    if isinstance(opt, (CurvatureOptimizer, BlockOptimizer)):
        return opt.step(closure)
    if not isinstance(opt, Optimizer):
        raise TypeError(
            f"opt must be a curvlab optimizer, a BlockOptimizer or a torch.optim.Optimizer, "
            f"got {type(opt).__name__}."
        )
    return opt.step(gradient_closure(closure, trainable_params(opt)))
