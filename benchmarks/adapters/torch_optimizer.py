"""torch-optimizer's ``Adahessian`` through its documented usage:
``loss.backward(create_graph=True); optimizer.step()``."""

from __future__ import annotations

from ..measure import peak_memory
from . import Context, copy_model, optimizer_repeats, sgd_step, step_closure

REQUIRES = ("torch_optimizer",)


def _adahessian_step(ctx: Context):
    import torch_optimizer

    model = copy_model(ctx)
    opt = torch_optimizer.Adahessian(model.parameters(), lr=1e-3, seed=0)
    closure = step_closure(ctx, model)

    def step():
        opt.zero_grad()
        closure().backward(create_graph=True)
        opt.step()

    return step


def optimizer(ctx: Context) -> dict:
    sec = ctx.timer.interleaved(
        {"SGD": sgd_step(ctx, copy_model(ctx)), "Adahessian": _adahessian_step(ctx)},
        repeats=optimizer_repeats(ctx),
    )
    return {
        "sgd_G": ctx.G_ratio(sec["SGD"]),
        "steps_over_sgd": {"Adahessian": sec["Adahessian"] / sec["SGD"]},
    }


def optimizer_memory(ctx: Context) -> dict:
    sgd = peak_memory(sgd_step(ctx, copy_model(ctx)), ctx.device)
    ada = peak_memory(_adahessian_step(ctx), ctx.device)
    return {
        "sgd_bytes": sgd,
        "adahessian_bytes": ada,
        "adahessian_over_sgd": ada / sgd if sgd and ada is not None else None,
    }


TASKS = {"optimizer": optimizer, "optimizer_memory": optimizer_memory}
