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
    """Seconds of each product in G, and beside each its FLOP floor in G (``flop_G``)."""
    v, V = ctx.vector(), ctx.vector(8, seed=1)
    out, floor = {}, {}

    def measure(key, op, x, per=1):
        c = ctx.cost(lambda: op @ x)
        out[key] = c["G"] / per
        floor[key] = None if c["flop_G"] is None else c["flop_G"] / per

    plain = hessian(ctx, graph_cache_mb=0)
    measure("hvp_plain", plain, v)
    measure("hvp_k8_per_column_plain", plain, V, 8)
    reuse = hessian(ctx)
    measure("hvp_reuse", reuse, v)
    measure("hvp_k8_per_column_reuse", reuse, V, 8)
    try:
        fwd = hessian(ctx, mode="fwd-rev")
        measure("hvp_fwd_rev", fwd, v)
        measure("hvp_k8_per_column_fwd_rev", fwd, V, 8)
    except Exception as err:  # noqa: BLE001
        out["hvp_fwd_rev"] = None
        ctx.notes.append(f"fwd-rev Hessian failed: {err!r}"[:200])
    for mode in ("rev-rev", "fwd-rev"):
        try:
            G = ggn(ctx, mode=mode)
            m = mode.replace("-", "_")
            measure(f"ggn_{m}", G, v)
            measure(f"ggn_k8_per_column_{m}", G, V, 8)
        except Exception as err:  # noqa: BLE001
            ctx.notes.append(f"GGN {mode} failed: {err!r}"[:200])
    # the library's default settings: what a user gets without tuning
    out["hvp"] = out["hvp_plain"]
    out["hvp_many"] = min(out["hvp_reuse"], out["hvp_k8_per_column_reuse"])
    cand = [out.get("ggn_rev_rev"), out.get("ggn_fwd_rev")]
    out["ggn"] = min(c for c in cand if c is not None) if any(cand) else None
    out["flop_G"] = floor
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
    def run(seed):
        H = hessian(ctx)
        res = _cl().eigsh(H, k=k, seed=seed, return_eigenvectors=False, **kw)
        return res.eigenvalues.tolist(), res.num_matvecs

    return run


def _default(name: str, fn=None):
    """The default value of keyword ``name`` of ``fn`` (default ``curvlab.eigsh``)."""
    import inspect

    return inspect.signature(fn or _cl().eigsh).parameters[name].default


def _top(ctx: Context, k: int) -> dict:
    target = float(ctx.config.get("target_error", 1e-4))
    # loose tolerances first: the ladder stops at the first setting that reaches the
    # target eigenvalue error on every seed; the call at the target tolerance and the
    # default call always run (they are what the targets compare)
    tols = [tol for tol in (1e-2, 1e-3) if tol > target]
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
    always = [f"eigsh tol={target:g}"]
    entries.append((always[0], False, _eig(ctx, k, tol=target)))
    if ctx.device.type == "cuda":  # block Lanczos: wide products are cheap on a GPU
        for b in (4, 8):
            always.append(f"eigsh tol={target:g}, block_size={b}")
            entries.append((always[-1], False, _eig(ctx, k, tol=target, block_size=b)))
    entries.append((f"eigsh default (tol={_default('tol'):g})", True, _eig(ctx, k)))
    out = ctx.ladder(k, entries, always=always)
    out["target_label"] = always[0]
    return out


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
        "reorthogonalize": repr(_default("reorthogonalize", cl.spectral_density)),
    }


def diagonal(ctx: Context) -> dict:
    cl = _cl()
    m = int(ctx.config.get("trace_matvecs", 30))

    def method(name):
        return lambda: cl.diagonal(hessian(ctx), num_matvecs=m, method=name, seed=0).estimate

    out = ctx.diagonal_runs({name: method(name) for name in ("hutchinson", "xdiag")})
    out["spectrum"] = _diagonal_difficulty(ctx, m)
    return out


def _diagonal_difficulty(ctx: Context, m: int, probes: int = 10) -> dict | None:
    """Why a diagonal estimate is hard on this Hessian: the off-diagonal energy over the
    diagonal's, ``(||H||_F^2 - ||d||^2) / ||d||^2`` (Hutchinson's squared relative error
    with ``m`` Rademacher probes is about this over ``m``), and the share of ``||H||_F^2``
    in the 10 largest eigenvalues (what a low-rank part such as XDiag's can remove).
    ``||H||_F^2`` is estimated as the mean of ``||H z||^2`` over Rademacher ``z``."""
    import torch

    ref = ctx.reference
    if ref is None or not ref.get("diag_file"):
        return None
    d = torch.load(ref["diag_file"], weights_only=True).to(torch.float64)
    H = hessian(ctx)
    gen = torch.Generator().manual_seed(123)
    Z = (torch.randint(0, 2, (ctx.n, probes), generator=gen) * 2 - 1).to(
        device=ctx.device, dtype=ctx.workload.dtype
    )
    HZ = (H @ Z).to("cpu", torch.float64)
    frob2 = float((HZ**2).sum() / probes)
    diag2 = float((d**2).sum())
    top = torch.tensor(ref["top_eigenvalues"][:10], dtype=torch.float64)
    ratio = max(frob2 - diag2, 0.0) / diag2
    return {
        "frobenius2": frob2,
        "diagonal2": diag2,
        "offdiag_over_diag": ratio,
        "hutchinson_predicted_error": (ratio / m) ** 0.5,
        "top10_share": float((top**2).sum()) / frob2,
        "probes": probes,
    }


# ------------------------------------------------------------------------------------------
#: torch-optimizer's Adahessian in curvlab's optimizer timing (when it is installed)
TORCH_OPTIMIZER = "torch-optimizer Adahessian"


def optimizer(ctx: Context) -> dict:
    """One step of each optimizer over one SGD step, all timed round-robin in one process
    (torch-optimizer's ``Adahessian`` among them when it is installed)."""
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
    try:  # torch-optimizer's Adahessian, timed round-robin with curvlab's in this process
        from .torch_optimizer import adahessian_step

        fns[TORCH_OPTIMIZER] = adahessian_step(ctx)
    except ImportError:  # not installed: curvlab's optimizers only
        pass
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
