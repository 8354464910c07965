"""curvlab through its public API: operators, eigsh, trace, spectral density, optimizers."""

from __future__ import annotations

from ..measure import peak_memory
from . import Context, copy_model, optimizer_repeats, sgd_step, step_closure

REQUIRES = ("curvlab",)


def _cl():
    import curvlab

    return curvlab


def hessian(ctx: Context, **kw):
    w = ctx.workload
    kw.setdefault("check_deterministic", False)
    return _cl().HessianOperator(w.model, w.loss_fn, w.batches, **kw)


def ggn(ctx: Context, **kw):
    w = ctx.workload
    kw.setdefault("check_deterministic", False)
    return _cl().GGNOperator(w.model, w.loss_fn, w.batches, **kw)


# ------------------------------------------------------------------------------------------
def products(ctx: Context) -> dict:
    v, V = ctx.vector(), ctx.vector(8, seed=1)
    out = {}
    plain = hessian(ctx, graph_cache_mb=0)
    out["hvp_plain"] = ctx.in_G(lambda: plain @ v)
    out["hvp_k8_per_column_plain"] = ctx.in_G(lambda: plain @ V) / 8
    reuse = hessian(ctx)
    out["hvp_reuse"] = ctx.in_G(lambda: reuse @ v)
    out["hvp_k8_per_column_reuse"] = ctx.in_G(lambda: reuse @ V) / 8
    try:
        fwd = hessian(ctx, mode="fwd-rev")
        out["hvp_fwd_rev"] = ctx.in_G(lambda: fwd @ v)
        out["hvp_k8_per_column_fwd_rev"] = ctx.in_G(lambda: fwd @ V) / 8
    except Exception as err:  # noqa: BLE001
        out["hvp_fwd_rev"] = None
        ctx.notes.append(f"fwd-rev Hessian failed: {err!r}"[:200])
    for mode in ("rev-rev", "fwd-rev"):
        try:
            G = ggn(ctx, mode=mode)
            out[f"ggn_{mode.replace('-', '_')}"] = ctx.in_G(lambda G=G: G @ v)
            key = f"ggn_k8_per_column_{mode.replace('-', '_')}"
            out[key] = ctx.in_G(lambda G=G: G @ V) / 8
        except Exception as err:  # noqa: BLE001
            ctx.notes.append(f"GGN {mode} failed: {err!r}"[:200])
    # the library's default settings: what a user gets without tuning
    out["hvp"] = out["hvp_plain"]
    out["hvp_many"] = min(out["hvp_reuse"], out["hvp_k8_per_column_reuse"])
    cand = [out.get("ggn_rev_rev"), out.get("ggn_fwd_rev")]
    out["ggn"] = min(c for c in cand if c is not None) if any(cand) else None
    return out


def memory(ctx: Context) -> dict:
    v = ctx.vector()
    plain = hessian(ctx, graph_cache_mb=0)
    out = ctx.product_memory(lambda: plain @ v)
    g = out["gradient_bytes"]
    try:
        G = ggn(ctx, mode="fwd-rev")
        gg = peak_memory(lambda: G @ v, ctx.device)
        out["ggn_over_gradient"] = gg / g if g and gg is not None else None
    except Exception:  # noqa: BLE001
        pass
    return out


# ------------------------------------------------------------------------------------------
def _eig(ctx: Context, k: int, **kw):
    def run():
        H = hessian(ctx)
        res = _cl().eigsh(H, k=k, seed=0, return_eigenvectors=False, **kw)
        return res.eigenvalues.tolist(), res.num_matvecs

    return run


def _top(ctx: Context, k: int) -> dict:
    target = float(ctx.config.get("target_error", 1e-4))
    # loose tolerances first (the ladder stops at the first that reaches the target
    # eigenvalue error: eigenvalue errors are about residual^2 / gap), the default always
    tols = [tol for tol in (1e-2, 1e-3, target) if tol >= target]
    entries = []
    if k > 1:
        # without the multiplicity check: the guarantee the peers give (one Krylov sequence
        # finds one copy of a repeated eigenvalue)
        entries += [
            (
                f"eigsh tol={tol:g}, check_multiplicity=False",
                False,
                _eig(ctx, k, tol=tol, check_multiplicity=False),
            )
            for tol in tols
        ]
    entries += [(f"eigsh tol={tol:g}", False, _eig(ctx, k, tol=tol)) for tol in tols]
    entries.append(("eigsh default (tol=1e-6)", True, _eig(ctx, k)))
    return ctx.ladder(k, entries)


def top1(ctx: Context) -> dict:
    return _top(ctx, 1)


def top10(ctx: Context) -> dict:
    return _top(ctx, int(ctx.config.get("top_k", 10)))


# ------------------------------------------------------------------------------------------
def trace(ctx: Context) -> dict:
    cl = _cl()
    m = int(ctx.config.get("trace_matvecs", 30))

    def method(name):
        return lambda seed: cl.trace(hessian(ctx), num_matvecs=m, method=name, seed=seed).estimate

    return ctx.trace_runs({name: method(name) for name in ("hutchinson", "hutch++", "xtrace")})


def density(ctx: Context) -> dict:
    cl = _cl()
    probes = int(ctx.config.get("density_probes", 10))
    steps = int(ctx.config.get("density_steps", 100))

    def run(p):
        return cl.spectral_density(hessian(ctx), num_probes=p, num_iter=steps, seed=0)

    ratio, res = ctx.once(lambda: run(probes))
    ratio1, _ = ctx.once(lambda: run(1))
    return {
        "probes": probes,
        "steps": steps,
        "G": ratio,
        "matvecs": res.num_matvecs,
        "one_probe_G": ratio1,
    }


def diagonal(ctx: Context) -> dict:
    cl = _cl()
    m = int(ctx.config.get("trace_matvecs", 30))

    def method(name):
        return lambda: cl.diagonal(hessian(ctx), num_matvecs=m, method=name, seed=0).estimate

    return ctx.diagonal_runs({name: method(name) for name in ("hutchinson", "xdiag")})


# ------------------------------------------------------------------------------------------
def optimizer(ctx: Context) -> dict:
    from curvlab import optim

    makers = {
        "AdaHessian (torch-optimizer preset)": lambda ps: optim.AdaHessian.torch_optimizer(
            ps, lr=1e-3
        ),
        "AdaHessian (official)": lambda ps: optim.AdaHessian(ps, lr=1e-3),
        "Sophia (every 10 steps)": lambda ps: optim.Sophia(ps, lr=1e-4),
        "Apollo": lambda ps: optim.Apollo(ps, lr=1e-3),
    }
    fns = {"SGD": sgd_step(ctx, copy_model(ctx))}
    for label, make in makers.items():
        try:
            model = copy_model(ctx)
            opt = make(model.parameters())
            closure = step_closure(ctx, model)
            opt.step(closure)  # fails here, not inside the timing, if the method cannot run
            fns[label] = lambda opt=opt, closure=closure: opt.step(closure)
        except Exception as err:  # noqa: BLE001
            ctx.notes.append(f"{label} failed: {err!r}"[:200])
    sec = ctx.timer.interleaved(fns, repeats=optimizer_repeats(ctx))
    sgd = sec.pop("SGD")
    out = {"sgd_G": ctx.G_ratio(sgd), "steps_over_sgd": {m: None for m in makers}}
    out["steps_over_sgd"].update({label: t / sgd for label, t in sec.items()})
    return out


def optimizer_memory(ctx: Context) -> dict:
    from curvlab import optim

    model = copy_model(ctx)
    sgd = peak_memory(sgd_step(ctx, model), ctx.device)
    model = copy_model(ctx)
    opt = optim.AdaHessian.torch_optimizer(model.parameters(), lr=1e-3)
    closure = step_closure(ctx, model)
    ada = peak_memory(lambda: opt.step(closure), ctx.device)
    return {
        "sgd_bytes": sgd,
        "adahessian_bytes": ada,
        "adahessian_over_sgd": ada / sgd if sgd and ada is not None else None,
    }


TASKS = {
    "products": products,
    "top1": top1,
    "top10": top10,
    "trace": trace,
    "density": density,
    "diagonal": diagonal,
    "optimizer": optimizer,
    # memory last: it changes malloc settings for the rest of the process
    "memory": memory,
    "optimizer_memory": optimizer_memory,
}
