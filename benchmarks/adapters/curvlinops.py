"""curvlinops (``curvlinops-for-pytorch``) through its documented API: the linear operators
``HessianLinearOperator`` / ``GGNLinearOperator``, ``scipy.sparse.linalg.eigsh`` on
``to_scipy()``, its trace and diagonal estimators, and ``lanczos_approximate_spectrum``."""

from __future__ import annotations

import numpy as np

from . import Context, seeded

REQUIRES = ("curvlinops", "scipy")


def _op(ctx: Context, kind: str = "hessian"):
    import curvlinops

    w = ctx.workload
    cls = curvlinops.HessianLinearOperator if kind == "hessian" else curvlinops.GGNLinearOperator
    return cls(w.model, w.loss_fn, w.params, w.batches, check_deterministic=False)


def products(ctx: Context) -> dict:
    v, V = ctx.vector(), ctx.vector(8, seed=1)
    H, G = _op(ctx), _op(ctx, "ggn")
    c = ctx.cost(lambda: H @ v)
    return {
        "hvp": c["G"],
        "flop_G": {"hvp": c["flop_G"]},
        "hvp_k8_per_column": ctx.in_G(lambda: H @ V) / 8,
        "ggn": ctx.in_G(lambda: G @ v),
        "ggn_k8_per_column": ctx.in_G(lambda: G @ V) / 8,
    }


def memory(ctx: Context) -> dict:
    v, H = ctx.vector(), _op(ctx)
    return ctx.product_memory(lambda: H @ v)


def _eigsh(ctx: Context, k: int, tol: float):
    def run(seed):
        from scipy.sparse.linalg import LinearOperator, eigsh

        A = _op(ctx).to_scipy()
        count = [0]

        def mv(x):
            count[0] += 1 if x.ndim == 1 else x.shape[1]
            return A.matvec(x) if x.ndim == 1 else A.matmat(x)

        counted = LinearOperator(A.shape, matvec=mv, matmat=mv, dtype=A.dtype)
        v0 = np.random.default_rng(seed).standard_normal(A.shape[0]).astype(A.dtype)
        vals = eigsh(counted, k=k, which="LA", tol=tol, v0=v0, return_eigenvectors=False)
        return vals.tolist(), count[0]

    return run


def _ladder(ctx: Context, k: int) -> dict:
    entries = [
        ("scipy eigsh tol=1e-2", False, _eigsh(ctx, k, 1e-2)),
        ("scipy eigsh tol=1e-4", False, _eigsh(ctx, k, 1e-4)),
        ("scipy eigsh tol=1e-6", False, _eigsh(ctx, k, 1e-6)),
        ("scipy eigsh default (tol=0: machine precision)", True, _eigsh(ctx, k, 0.0)),
    ]
    return ctx.ladder(k, entries)


def top1(ctx: Context) -> dict:
    return _ladder(ctx, 1)


def top10(ctx: Context) -> dict:
    return _ladder(ctx, int(ctx.config.get("top_k", 10)))


def trace(ctx: Context) -> dict:
    import curvlinops

    m = int(ctx.config.get("trace_matvecs", 30))

    def method(fn):
        def est(seed):
            seeded(seed)
            return float(fn(_op(ctx), m))

        return est

    return ctx.trace_runs(
        {
            "hutchinson": method(curvlinops.hutchinson_trace),
            "hutch++": method(curvlinops.hutchpp_trace),
            "xtrace": method(curvlinops.xtrace),
        }
    )


def diagonal(ctx: Context) -> dict:
    import curvlinops

    m = int(ctx.config.get("trace_matvecs", 30))

    def method(fn):
        def run():
            seeded(0)  # curvlinops draws its probes from the global RNG
            return fn(_op(ctx), m)

        return run

    return ctx.diagonal_runs(
        {"hutchinson": method(curvlinops.hutchinson_diag), "xdiag": method(curvlinops.xdiag)}
    )


def density(ctx: Context) -> dict:
    import curvlinops

    probes = int(ctx.config.get("density_probes", 10))
    steps = int(ctx.config.get("density_steps", 100))

    def run():
        seeded(0)
        curvlinops.lanczos_approximate_spectrum(_op(ctx), steps, num_repeats=probes)

    ratio, _ = ctx.once(run)
    return {
        "probes": probes,
        "steps": steps,
        "G": ratio,
        "note": "includes the spectral boundaries by scipy eigsh (tol=1e-2)",
    }


TASKS = {
    "products": products,
    "top1": top1,
    "top10": top10,
    "trace": trace,
    "diagonal": diagonal,
    "density": density,
    "memory": memory,
}
