"""BackPACK's exact diagonals (``DiagHessian``, ``DiagGGNExact``) through ``extend`` and the
``backpack(...)`` context, as documented. BackPACK needs ``nn.Sequential`` models of
supported layers: W1-W3 (not the Transformer W4)."""

from __future__ import annotations

import warnings

import torch

from . import Context

REQUIRES = ("backpack",)


def diagonal(ctx: Context) -> dict:
    from backpack import backpack, extend
    from backpack.extensions import DiagGGNExact, DiagHessian

    w = ctx.workload
    if not isinstance(w.model, torch.nn.Sequential):
        return {"skipped": "BackPACK supports nn.Sequential models of its layers only"}
    model = extend(w.model)
    loss_fn = extend(torch.nn.CrossEntropyLoss(reduction="sum"))  # / N below
    N = w.num_data
    out = {}
    for label, ext, attr in (
        ("DiagHessian", DiagHessian, "diag_h"),
        ("DiagGGNExact", DiagGGNExact, "diag_ggn_exact"),
    ):

        def run(ext=ext, attr=attr):
            total = None
            for X, y in w.batches:
                model.zero_grad()
                loss = loss_fn(model(X), y)
                with backpack(ext()), warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    loss.backward()
                d = torch.cat([getattr(p, attr).reshape(-1) for p in w.params])
                total = d if total is None else total + d
            return total / N

        out[label] = {"G": ctx.in_G(run), "exact": True}
    model.zero_grad()
    return out


TASKS = {"diagonal": diagonal}
