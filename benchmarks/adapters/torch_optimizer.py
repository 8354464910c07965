"""torch-optimizer's ``Adahessian`` through its documented usage:
``loss.backward(create_graph=True); optimizer.step()``.

Its step time is measured by the curvlab adapter's ``optimizer`` task, round-robin with
curvlab's AdaHessian in one process (timings in separate processes differ by up to 20 %);
this adapter measures its peak memory."""

from __future__ import annotations

from ..measure import peak_memory
from . import Context, copy_model, sgd_step, step_closure

REQUIRES = ("torch_optimizer",)


def adahessian_step(ctx: Context):
    """One ``Adahessian`` step as its documentation writes it (a fresh model copy)."""
    import torch_optimizer

    model = copy_model(ctx)
    opt = torch_optimizer.Adahessian(model.parameters(), lr=1e-3, seed=0)
    closure = step_closure(ctx, model)

    def step():
        opt.zero_grad()
        closure().backward(create_graph=True)
        opt.step()

    return step


def optimizer_memory(ctx: Context) -> dict:
    sgd = peak_memory(sgd_step(ctx, copy_model(ctx)), ctx.device)
    ada = peak_memory(adahessian_step(ctx), ctx.device)
    return {
        "sgd_bytes": sgd,
        "adahessian_bytes": ada,
        "adahessian_over_sgd": ada / sgd if sgd and ada is not None else None,
    }


TASKS = {"optimizer_memory": optimizer_memory}
