"""curvlab optimizers inside the Hugging Face :class:`transformers.Trainer`.

The Trainer calls ``loss.backward()`` (without ``create_graph``) and then
``optimizer.step()`` without a closure, so a curvature method would find no graph in
``p.grad``. :class:`CurvatureTrainer` is a drop-in subclass whose ``training_step`` takes the
step itself, ``optimizer.step(closure)`` with a closure that computes the Trainer's loss
(:meth:`~transformers.Trainer.compute_loss`, no backward); the loop's own ``optimizer.step()``
that follows is then a no-op, and the rest of the loop (learning-rate scheduler, logging,
callbacks, checkpoints) is the Trainer's. ``transformers`` is imported only with this module.

>>> from curvlab.optim.hf import CurvatureTrainer                     # doctest: +SKIP
>>> opt = AdaHessian(model.parameters(), lr=0.05)                     # doctest: +SKIP
>>> trainer = CurvatureTrainer(model=model, args=args, train_dataset=ds,
...                            optimizers=(opt, None))                # doctest: +SKIP
>>> trainer.train()                                                   # doctest: +SKIP

Rules: ``gradient_accumulation_steps`` must be 1 (a closure step uses one batch);
``TrainingArguments.max_grad_norm`` (1.0 by default) is applied by the optimizer, on the
closure's gradient, when the optimizer has no ``max_grad_norm`` of its own (the Trainer's own
clipping would come after the step); fp16 with a gradient scaler is refused (use bf16, or
fp32); one process (no DDP or FSDP wrapping of the model).
"""

from __future__ import annotations

from typing import Any

try:
    import transformers
except ImportError as err:  # pragma: no cover - the optional extra
    raise ImportError(
        "curvlab.optim.hf needs the transformers package: pip install 'curvlab[hf]' (or "
        "pip install transformers)."
    ) from err

import torch

from .._public import public_dir
from ._base import CurvatureOptimizer
from .blocks import BlockOptimizer

__all__ = ["CurvatureTrainer", "curvature_optimizer_of"]
__dir__ = public_dir(globals())


def curvature_optimizer_of(optimizer: Any) -> CurvatureOptimizer | BlockOptimizer | None:
    """The curvlab optimizer inside ``optimizer`` (accelerate's ``AcceleratedOptimizer``
    wraps the one given to the Trainer), or ``None`` for any other optimizer."""
    seen = 0
    while optimizer is not None and seen < 8:
        if isinstance(optimizer, (CurvatureOptimizer, BlockOptimizer)):
            return optimizer
        optimizer = getattr(optimizer, "optimizer", None)
        seen += 1
    return None


def _mark_step_taken(opt: CurvatureOptimizer | BlockOptimizer) -> None:
    """Make the loop's next ``opt.step()`` (no closure) a no-op: the step was taken."""
    opt._step_taken = True


class CurvatureTrainer(transformers.Trainer):
    """A :class:`transformers.Trainer` that steps a curvlab optimizer with a closure.

    With any other optimizer it behaves exactly as the Trainer. With a curvlab optimizer
    (given as ``optimizers=(opt, scheduler)``, a :class:`~curvlab.optim.CurvatureOptimizer` or
    a :class:`~curvlab.optim.BlockOptimizer`), ``training_step`` evaluates
    ``compute_loss`` in a closure, calls ``opt.step(closure)`` (one gradient, with the
    double-backward graph only on the steps that need it, freed before returning) and returns
    the loss at the parameters before the step; ``p.grad`` holds the (clipped) gradient, so
    the Trainer's gradient-norm logging works. See the module docstring for the rules.
    """

    def training_step(self, model, inputs, num_items_in_batch=None):
        opt = curvature_optimizer_of(self.optimizer)
        if opt is None:
            return super().training_step(model, inputs, num_items_in_batch)
        args = self.args
        if args.gradient_accumulation_steps != 1:
            raise ValueError(
                "CurvatureTrainer steps a curvlab optimizer once per batch (a closure step): "
                f"gradient_accumulation_steps must be 1, got {args.gradient_accumulation_steps}; "
                "use a larger per_device_train_batch_size instead."
            )
        if getattr(args, "fp16", False):
            raise ValueError(
                "CurvatureTrainer does not support fp16 with a gradient scaler: the scaled loss "
                "would scale the curvature too. Use bf16=True (autocast, no scaler) or fp32."
            )
        if isinstance(opt, CurvatureOptimizer) and opt.max_grad_norm is None:
            if args.max_grad_norm and args.max_grad_norm > 0:
                opt.max_grad_norm = float(args.max_grad_norm)
        model.train()
        inputs = self._prepare_inputs(inputs)

        def closure():
            with self.compute_loss_context_manager():
                loss = self.compute_loss(model, inputs, num_items_in_batch=num_items_in_batch)
            if args.n_gpu > 1:  # pragma: no cover - DataParallel
                loss = loss.mean()
            return loss

        loss = opt.step(closure)
        _mark_step_taken(opt)
        return loss.detach() if isinstance(loss, torch.Tensor) else torch.tensor(float(loss))
