"""hessian-eigenthings (1.0 API) through its documented API: ``HessianOperator`` /
``GGNOperator`` with ``supervised_loss``, ``lanczos``, ``trace`` and ``spectral_density``."""

from __future__ import annotations

from . import Context

REQUIRES = ("hessian_eigenthings",)


def _op(ctx: Context, kind: str = "hessian"):
    import hessian_eigenthings as he

    w = ctx.workload
    if kind == "hessian":
        return he.HessianOperator(w.model, w.batches, he.supervised_loss(w.loss_fn))
    return he.GGNOperator(
        w.model, w.batches, he.supervised_forward, he.supervised_loss_of_output(w.loss_fn)
    )


def products(ctx: Context) -> dict:
    v = ctx.vector()
    H, G = _op(ctx), _op(ctx, "ggn")
    c = ctx.cost(lambda: H.matvec(v))
    out = {"hvp": c["G"], "flop_G": {"hvp": c["flop_G"]}}
    try:
        out["ggn"] = ctx.in_G(lambda: G.matvec(v))
    except Exception as err:  # noqa: BLE001
        ctx.notes.append(f"GGN failed: {err!r}"[:200])
    return out


def memory(ctx: Context) -> dict:
    v, H = ctx.vector(), _op(ctx)
    return ctx.product_memory(lambda: H.matvec(v))


def _lanczos(ctx: Context, k: int, **kw):
    def run(seed):
        import hessian_eigenthings as he

        res = he.lanczos(_op(ctx), k=k, seed=seed, **kw)
        return res.eigenvalues.tolist(), int(res.iterations)

    return run


def _ladder(ctx: Context, k: int, iters: list[int]) -> dict:
    entries = [
        (f"lanczos(k={k}) default (max_iter={min(2 * k, ctx.n - 1)}, LM)", True, _lanczos(ctx, k))
    ]
    entries += [
        (f"lanczos max_iter={m}, which=LA", False, _lanczos(ctx, k, max_iter=m, which="LA"))
        for m in iters
    ]
    return ctx.ladder(k, entries)


def top1(ctx: Context) -> dict:
    return _ladder(ctx, 1, [10, 20, 30, 50, 80])


def top10(ctx: Context) -> dict:
    return _ladder(ctx, int(ctx.config.get("top_k", 10)), [30, 50, 80, 120])


def trace(ctx: Context) -> dict:
    import hessian_eigenthings as he

    m = int(ctx.config.get("trace_matvecs", 30))
    return ctx.trace_runs(
        {
            "hutchinson": lambda s: (
                he.trace(_op(ctx), num_matvecs=m, method="hutchinson", seed=s).estimate
            ),
            "hutch++": lambda s: (
                he.trace(_op(ctx), num_matvecs=m, method="hutch++", seed=s).estimate
            ),
        }
    )


def density(ctx: Context) -> dict:
    import hessian_eigenthings as he

    probes = int(ctx.config.get("density_probes", 10))
    steps = int(ctx.config.get("density_steps", 100))
    ratio, _ = ctx.once(
        lambda: he.spectral_density(_op(ctx), num_runs=probes, lanczos_steps=steps, seed=0)
    )
    return {"probes": probes, "steps": steps, "G": ratio}


TASKS = {
    "products": products,
    "top1": top1,
    "top10": top10,
    "trace": trace,
    "density": density,
    "memory": memory,
}
