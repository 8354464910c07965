"""PyHessian through its documented API: ``hessian(model, criterion, dataloader=...)`` and
its ``eigenvalues``, ``trace`` and ``density`` methods (full-data mode).

Compatibility shim: PyHessian 0.1's ``density`` calls ``torch.eig``, removed from torch
2.x; the adapter provides it from ``torch.linalg.eigh`` on the (small, symmetric) Lanczos
tridiagonal matrix. The shim is outside the timed products and costs microseconds.
"""

from __future__ import annotations

import statistics

import torch

from . import Context, seeded

REQUIRES = ("pyhessian",)


def _eig_shim(T, eigenvectors=False):
    vals, vecs = torch.linalg.eigh(T)
    return torch.stack([vals, torch.zeros_like(vals)], dim=1), vecs


def _needs_eig_shim() -> bool:
    """torch 2.x keeps a ``torch.eig`` that only raises; older builds had a working one."""
    try:
        torch.eig(torch.eye(1), eigenvectors=True)
    except (AttributeError, RuntimeError):
        return True
    return False


def _hessian(ctx: Context):
    from pyhessian import hessian

    w = ctx.workload
    h = hessian(w.model, w.loss_fn, dataloader=w.batches, cuda=ctx.device.type == "cuda")
    # count products: every method of PyHessian's full-data mode goes through this one
    h.num_matvecs = 0
    product = h.dataloader_hv_product

    def counted(v):
        h.num_matvecs += 1
        return product(v)

    h.dataloader_hv_product = counted
    return h


def products(ctx: Context) -> dict:
    h = _hessian(ctx)
    v = ctx.split(ctx.vector())
    c = ctx.cost(lambda: h.dataloader_hv_product(v))
    return {"hvp": c["G"], "flop_G": {"hvp": c["flop_G"]}}


def memory(ctx: Context) -> dict:
    h, v = _hessian(ctx), ctx.split(ctx.vector())
    return ctx.product_memory(lambda: h.dataloader_hv_product(v))


def _eig(ctx: Context, k: int, **kw):
    def run(seed):
        seeded(seed)  # PyHessian draws its start vectors from torch's global RNG
        h = _hessian(ctx)
        vals, _ = h.eigenvalues(top_n=k, **kw)
        return list(vals), h.num_matvecs

    return run


def top1(ctx: Context) -> dict:
    entries = [
        ("eigenvalues() default (power iteration, tol=1e-3)", True, _eig(ctx, 1)),
        ("tol=1e-5", False, _eig(ctx, 1, tol=1e-5)),
        ("tol=1e-7, maxIter=1000", False, _eig(ctx, 1, tol=1e-7, maxIter=1000)),
    ]
    return ctx.ladder(1, entries)


def top10(ctx: Context) -> dict:
    k = int(ctx.config.get("top_k", 10))
    entries = [
        (f"eigenvalues(top_n={k}) default (tol=1e-3)", True, _eig(ctx, k)),
        ("tol=1e-5", False, _eig(ctx, k, tol=1e-5)),
    ]
    return ctx.ladder(k, entries)


def trace(ctx: Context) -> dict:
    m = int(ctx.config.get("trace_matvecs", 30))

    def at_budget(seed):
        seeded(seed)
        return statistics.mean(_hessian(ctx).trace(maxIter=m, tol=0.0))

    out = ctx.trace_runs({"hutchinson": at_budget})
    # the default call (maxIter=100, tol=1e-3): its own number of products and error
    seeded(0)
    h = _hessian(ctx)
    ratio, samples = ctx.once(lambda: h.trace())
    exact = out["exact"]
    est = statistics.mean(samples)
    out["default"] = {
        "estimate": est,
        "matvecs": h.num_matvecs,
        "G": ratio,
        "error": None if exact is None else abs(est - exact) / abs(exact),
    }
    return out


def density(ctx: Context) -> dict:
    steps = int(ctx.config.get("density_steps", 100))
    if _needs_eig_shim():
        torch.eig = _eig_shim  # see the module docstring

    def run():
        seeded(0)
        h = _hessian(ctx)
        h.density(iter=steps, n_v=1)
        return h.num_matvecs

    ratio, mv = ctx.once(run)
    return {"probes": 1, "steps": steps, "G": ratio, "matvecs": mv}


TASKS = {
    "products": products,
    "top1": top1,
    "top10": top10,
    "trace": trace,
    "density": density,
    "memory": memory,
}
