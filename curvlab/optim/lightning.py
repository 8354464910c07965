"""curvlab optimizers inside a Lightning ``Trainer`` with automatic optimization.

Lightning's automatic optimization calls ``optimizer.step(closure=...)`` with a closure that
runs ``training_step``, ``zero_grad`` and ``backward`` and returns the loss *detached*; a
curvlab optimizer, which takes the gradient itself from the closure's loss, then raises a
:class:`~curvlab.optim.ClosureError` (the loss does not require grad). Two ways work:

- manual optimization, with nothing from this module: ``self.automatic_optimization = False``
  and, in ``training_step``, ``self.optimizers().step(lambda: loss_of(batch))``;
- :class:`CurvatureModule`, a mixin placed before ``LightningModule``
  (``class Model(CurvatureModule, L.LightningModule)``): ``training_step`` stays as it is;
  the mixin's ``backward`` keeps the loss instead of calling ``loss.backward()``, and its
  ``optimizer_step`` passes the optimizer a closure that runs Lightning's (training_step,
  zero_grad, the kept loss) and returns the loss with its graph.

Rules of the mixin: ``accumulate_grad_batches`` must be 1 (a closure step uses one batch);
``gradient_clip_val`` (norm clipping) becomes the optimizer's ``max_grad_norm`` when it has none
(Lightning's own clipping would run before the gradient exists), value clipping is refused;
``precision="16-mixed"`` (a gradient scaler) is refused, ``"bf16-mixed"`` works; one process.
A re-evaluation of the loss (NewtonCG's line search) runs ``training_step`` again under
:func:`torch.no_grad` with ``self.log``, ``self.log_dict`` and ``optimizer_zero_grad`` muted,
and the loss Lightning reports is the one before the step. With any other optimizer the mixin
does nothing.

This module does not import Lightning (the mixin needs none of its classes); it is imported by
``from curvlab.optim.lightning import CurvatureModule``, never by ``curvlab.optim``.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from .._public import public_dir
from ._base import CurvatureOptimizer
from .blocks import BlockOptimizer

__all__ = ["CurvatureModule", "curvature_optimizer_of"]
__dir__ = public_dir(globals())


def curvature_optimizer_of(optimizer: Any) -> CurvatureOptimizer | BlockOptimizer | None:
    """The curvlab optimizer inside ``optimizer`` (Lightning's ``LightningOptimizer`` wraps the
    one ``configure_optimizers`` returned), or ``None`` for any other optimizer.

    A ``LightningOptimizer`` is an instance of its optimizer's class too (Lightning derives a
    class from both), so it is unwrapped (``_optimizer``) before the type is tested: an
    attribute set on the wrapper would not reach the optimizer that steps."""
    for _ in range(8):
        inner = vars(optimizer).get("_optimizer") if hasattr(optimizer, "__dict__") else None
        if inner is not None:
            optimizer = inner
        elif optimizer is None or isinstance(optimizer, (CurvatureOptimizer, BlockOptimizer)):
            return optimizer
        else:
            optimizer = getattr(optimizer, "optimizer", None)
    return None


def _mute(*args: Any, **kwargs: Any) -> None:
    """``self.log`` (and the others of ``_MUTED``) during a re-evaluation of the loss."""


#: hooks that do nothing while the optimizer re-evaluates the loss: nothing is logged twice,
#: and Lightning's ``zero_grad`` does not erase the gradient the optimizer has just written
_MUTED = ("log", "log_dict", "optimizer_zero_grad")


class CurvatureModule:
    """Mixin that makes a ``LightningModule`` with automatic optimization step curvlab
    optimizers through their closure contract.

    Put it before ``LightningModule`` in the bases; ``training_step`` returns the loss (or a
    dict with ``"loss"``) as usual, and ``configure_optimizers`` returns a curvlab optimizer (a
    :class:`~curvlab.optim.CurvatureOptimizer` or a :class:`~curvlab.optim.BlockOptimizer`),
    with or without a scheduler. Each optimizer step evaluates ``training_step`` once with a
    graph, and the optimizer takes the gradient (with the double-backward graph only on the
    steps that need it) and writes a detached ``p.grad``. The hooks ``on_before_backward`` and
    ``on_after_backward`` run as usual but before the gradient exists; use
    ``on_before_optimizer_step`` or ``on_train_batch_end`` to read ``p.grad``. See the module
    docstring for the rules.

    Examples
    --------
    >>> import lightning as L                                            # doctest: +SKIP
    >>> class Model(CurvatureModule, L.LightningModule):                  # doctest: +SKIP
    ...     def training_step(self, batch, batch_idx):
    ...         x, y = batch
    ...         return torch.nn.functional.mse_loss(self.net(x), y)
    ...     def configure_optimizers(self):
    ...         return AdaHessian(self.parameters(), lr=0.1)
    """

    #: the loss ``backward`` kept during a curvlab step (``None`` outside one)
    _curvlab_loss: Tensor | None = None
    #: whether ``backward`` keeps the loss instead of calling ``loss.backward()``
    _curvlab_capture: bool = False

    def backward(self, loss: Tensor, *args: Any, **kwargs: Any) -> None:
        """Keep ``loss`` for the optimizer during a curvlab step; else Lightning's backward."""
        if self._curvlab_capture:
            self._curvlab_loss = loss
            return
        super().backward(loss, *args, **kwargs)  # type: ignore[misc]

    def configure_gradient_clipping(
        self, optimizer: Any, gradient_clip_val: Any = None, gradient_clip_algorithm: Any = None
    ) -> None:
        """Nothing for a curvlab optimizer (it clips with ``max_grad_norm``); else Lightning's."""
        if curvature_optimizer_of(optimizer) is not None:
            return
        super().configure_gradient_clipping(  # type: ignore[misc]
            optimizer,
            gradient_clip_val=gradient_clip_val,
            gradient_clip_algorithm=gradient_clip_algorithm,
        )

    def _check_curvature_step(self, opt: CurvatureOptimizer | BlockOptimizer) -> None:
        trainer = self.trainer  # type: ignore[attr-defined]
        if trainer.accumulate_grad_batches != 1:
            raise ValueError(
                "CurvatureModule steps a curvlab optimizer once per batch (a closure step): "
                f"accumulate_grad_batches must be 1, got {trainer.accumulate_grad_batches}; use "
                "a larger batch instead."
            )
        if getattr(trainer, "world_size", 1) > 1:
            raise ValueError(
                "CurvatureModule supports one process: the gradient a curvlab optimizer takes "
                "itself is not all-reduced by Lightning's DDP hooks."
            )
        if getattr(trainer.precision_plugin, "scaler", None) is not None:
            raise ValueError(
                "CurvatureModule does not support precision='16-mixed' (a gradient scaler): the "
                "scaled loss would scale the curvature too. Use precision='bf16-mixed' or fp32."
            )
        clip = trainer.gradient_clip_val
        if clip:
            algorithm = str(getattr(trainer, "gradient_clip_algorithm", None) or "norm").lower()
            if "value" in algorithm:
                raise ValueError(
                    "CurvatureModule supports norm clipping only (the optimizer's "
                    "max_grad_norm); got gradient_clip_algorithm='value'."
                )
            if isinstance(opt, CurvatureOptimizer) and opt.max_grad_norm is None:
                opt.max_grad_norm = float(clip)

    def optimizer_step(
        self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None
    ) -> None:
        """Step a curvlab optimizer with a closure that returns the loss with its graph."""
        opt = curvature_optimizer_of(optimizer)
        if opt is None or optimizer_closure is None:
            return super().optimizer_step(  # type: ignore[misc]
                epoch, batch_idx, optimizer, optimizer_closure
            )
        self._check_curvature_step(opt)
        first: list[Any] = []  # Lightning's result of the first evaluation

        def closure() -> Tensor:
            import torch

            reevaluation = bool(first) or not torch.is_grad_enabled()
            if reevaluation:
                for name in _MUTED:  # no second log, no zero_grad of the gradient just taken
                    setattr(self, name, _mute)
            self._curvlab_capture, self._curvlab_loss = True, None
            try:
                optimizer_closure()
                loss = self._curvlab_loss
            finally:
                self._curvlab_capture, self._curvlab_loss = False, None
                if reevaluation:
                    for name in _MUTED:
                        self.__dict__.pop(name, None)
            if not first:
                first.append(getattr(optimizer_closure, "_result", None))
            if loss is None:
                raise ValueError(
                    "training_step returned None: CurvatureModule cannot skip a batch inside a "
                    "curvlab step; return the loss."
                )
            return loss

        try:
            optimizer.step(closure=closure)
        finally:
            if first and first[0] is not None and hasattr(optimizer_closure, "_result"):
                optimizer_closure._result = first[0]  # report the loss before the step
            first.clear()
