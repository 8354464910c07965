"""The issue's targets, evaluated on a results dict, and small accessors shared with the
renderer."""

from __future__ import annotations

PEERS = ("pyhessian", "curvlinops", "hessian_eigenthings")
LABELS = {
    "curvlab": "curvlab",
    "pyhessian": "PyHessian",
    "curvlinops": "curvlinops",
    "hessian_eigenthings": "hessian-eigenthings",
    "torch_optimizer": "torch-optimizer",
    "backpack": "BackPACK",
}


def task(results: dict, key: str, adapter: str, name: str) -> dict | None:
    """``results[workloads][key][adapters][adapter][results][name]`` or ``None``."""
    rec = results.get("workloads", {}).get(key, {}).get("adapters", {}).get(adapter)
    if not isinstance(rec, dict):
        return None
    out = rec.get("results", {}).get(name)
    return out if isinstance(out, dict) and "skipped" not in out else None


def default_run(eig: dict | None) -> dict | None:
    """The run made with the library's defaults in an eigenvalue ladder."""
    if not eig:
        return None
    for r in eig.get("runs", []):
        if r.get("default") and "G" in r:
            return r
    return None


def best_trace(tr: dict | None) -> tuple[str, float] | None:
    """The method with the smallest median error, and that error."""
    if not tr:
        return None
    errs = [
        (m, v["median_error"])
        for m, v in tr.get("methods", {}).items()
        if isinstance(v, dict) and v.get("median_error") is not None
    ]
    return min(errs, key=lambda x: x[1]) if errs else None


def _target(tid, text, threshold, rows, better="lower", note=""):
    vals = [r["value"] for r in rows if r.get("value") is not None]
    if not vals:
        met, worst = None, None
    elif better == "lower":
        worst = max(vals)
        met = worst <= threshold
    else:
        worst = min(vals)
        met = worst >= threshold
    return {
        "id": tid,
        "target": text,
        "threshold": threshold,
        "rows": rows,
        "worst": worst,
        "met": met,
        "note": note,
    }


def evaluate_targets(results: dict) -> list[dict]:
    """Every target of the issue with the measured ratio per workload (``None``: not
    measured in this run)."""
    keys = list(results.get("workloads", {}))
    targets = []

    # 1. correct by default
    rows = []
    for key in keys:
        for k_task in ("top1", "top10"):
            cl = default_run(task(results, key, "curvlab", k_task))
            if cl is None or cl.get("error") is None:
                continue
            peers = {}
            for p in PEERS:
                d = default_run(task(results, key, p, k_task))
                if d is not None and d.get("error") is not None:
                    peers[LABELS[p]] = d["error"]
            detail = ", ".join(f"{p} {e:.1e}" for p, e in peers.items())
            rows.append(
                {"workload": f"{key} {k_task}", "value": cl["error"], "detail": f"peers: {detail}"}
            )
    targets.append(
        _target(
            "correct-by-default",
            "default eigsh returns the requested (largest algebraic) eigenvalues: relative "
            "error of the default call",
            1e-4,
            rows,
        )
    )

    # 2. product cost
    rows_plain, rows_many = [], []
    for key in keys:
        pr = task(results, key, "curvlab", "products")
        if pr is None or not key.startswith(("W1", "W2", "W3")):
            continue
        rows_plain.append({"workload": key, "value": pr.get("hvp_plain")})
        rows_many.append(
            {
                "workload": key,
                "value": pr.get("hvp_many"),
                "detail": f"graph reuse {pr.get('hvp_reuse', float('nan')):.2f} G, "
                f"k=8 batched {pr.get('hvp_k8_per_column_reuse', float('nan')):.2f} G/column",
            }
        )
    targets.append(_target("hvp", "one HVP (no reuse), in G, W1-W3", 3.0, rows_plain))
    targets.append(
        _target(
            "hvp-many",
            "HVP per product with graph reuse or k=8 batched columns, in G, W1-W3",
            1.5,
            rows_many,
        )
    )

    # 3-4. eigenvalues to 1e-4
    for k_task, tid, text in (
        ("top1", "top1-speed", "top-1 to 1e-4: curvlab time / fastest peer reaching 1e-4"),
        ("top10", "top10-speed", "top-10 to 1e-4: curvlab time / fastest peer reaching 1e-4"),
    ):
        rows = []
        for key in keys:
            cl = task(results, key, "curvlab", k_task)
            if cl is None or cl.get("fastest_G") is None:
                continue
            peer = [
                (LABELS[p], task(results, key, p, k_task)["fastest_G"])
                for p in PEERS
                if task(results, key, p, k_task) is not None
                and task(results, key, p, k_task).get("fastest_G") is not None
            ]
            if not peer:
                rows.append({"workload": key, "value": None, "detail": "no peer reached 1e-4"})
                continue
            name, best = min(peer, key=lambda x: x[1])
            rows.append(
                {
                    "workload": key,
                    "value": cl["fastest_G"] / best,
                    "detail": f"curvlab {cl['fastest_G']:.0f} G vs {name} {best:.0f} G",
                }
            )
        targets.append(_target(tid, text, 1 / 3, rows))
    rows = []
    for key in keys:
        cl = task(results, key, "curvlab", "top1")
        ph = default_run(task(results, key, "pyhessian", "top1"))
        if cl is None or cl.get("fastest_G") is None or ph is None:
            continue
        rows.append(
            {
                "workload": key,
                "value": cl["fastest_G"] / ph["G"],
                "detail": f"PyHessian default {ph['G']:.0f} G, error {ph['error']:.1e}",
            }
        )
    targets.append(
        _target(
            "top1-vs-pyhessian",
            "top-1 to 1e-4: curvlab time / PyHessian's default call (looser)",
            1.0,
            rows,
        )
    )

    # 5. density
    rows = []
    for key in keys:
        cl = task(results, key, "curvlab", "density")
        ph = task(results, key, "pyhessian", "density")
        if cl and ph and cl.get("G") and ph.get("G"):
            rows.append(
                {
                    "workload": key,
                    "value": cl["G"] / ph["G"],
                    "detail": f"curvlab {cl['probes']}x{cl['steps']} {cl['G']:.0f} G, "
                    f"PyHessian 1x{ph['steps']} {ph['G']:.0f} G",
                }
            )
    targets.append(
        _target(
            "density",
            "SLQ 10 probes x 100 steps (curvlab) / 1 probe x 100 steps (PyHessian)",
            3.0,
            rows,
        )
    )

    # 6. trace at equal matvecs
    rows = []
    for key in keys:
        if not key.endswith("trained"):
            continue
        cl = best_trace(task(results, key, "curvlab", "trace"))
        peer = [
            (LABELS[p], best_trace(task(results, key, p, "trace")))
            for p in PEERS
            if best_trace(task(results, key, p, "trace")) is not None
        ]
        if cl is None or not peer:
            continue
        name, (meth, err) = min(peer, key=lambda x: x[1][1])
        rows.append(
            {
                "workload": key,
                "value": cl[1] / err if err > 0 else float("inf"),
                "detail": f"curvlab {cl[0]} {cl[1]:.1e} vs {name} {meth} {err:.1e}",
            }
        )
    targets.append(
        _target(
            "trace",
            "trace error at equal matvecs (trained): curvlab's best / best peer's",
            1.0,
            rows,
            note="strictly below 1 to lead",
        )
    )

    # 7. AdaHessian
    rows_t, rows_m = [], []
    for key in keys:
        cl = task(results, key, "curvlab", "optimizer")
        to = task(results, key, "torch_optimizer", "optimizer")
        if cl and to:
            a = cl["steps_over_sgd"].get("AdaHessian (torch-optimizer preset)")
            b = to["steps_over_sgd"].get("Adahessian")
            if a and b:
                rows_t.append(
                    {
                        "workload": key,
                        "value": a / b,
                        "detail": f"{a:.2f} vs {b:.2f} SGD steps",
                    }
                )
        cl = task(results, key, "curvlab", "optimizer_memory")
        to = task(results, key, "torch_optimizer", "optimizer_memory")
        if cl and to and cl.get("adahessian_bytes") and to.get("adahessian_bytes"):
            a, b = cl["adahessian_bytes"], to["adahessian_bytes"]
            rows_m.append(
                {
                    "workload": key,
                    "value": 1.0 if abs(a - b) <= 64 else a / b,
                    "detail": f"{a:,} vs {b:,} bytes",
                }
            )
    targets.append(
        _target("adahessian-time", "AdaHessian step: curvlab / torch-optimizer", 1.0, rows_t)
    )
    targets.append(
        _target(
            "adahessian-memory",
            "AdaHessian step peak memory: curvlab / torch-optimizer (equal within 64 bytes "
            "counts as equal)",
            1.0,
            rows_m,
            note="curvlab's step returns the loss, so its scalar stays alive through the step "
            "(4-8 bytes)",
        )
    )

    # 8. memory
    rows = []
    for key in keys:
        m = task(results, key, "curvlab", "memory")
        if m and m.get("hvp_over_gradient") is not None:
            rows.append({"workload": key, "value": m["hvp_over_gradient"]})
    targets.append(
        _target("hvp-memory", "HVP peak memory / gradient's (no graph reuse)", 3.0, rows)
    )
    return targets


def format_targets(targets: list[dict]) -> str:
    """A plain-text summary of the targets (printed at the end of a run)."""
    lines = ["", "targets (worst case over the workloads measured):"]
    for t in targets:
        state = {True: "met", False: "MISSED", None: "not measured"}[t["met"]]
        worst = "-" if t["worst"] is None else f"{t['worst']:.3g}"
        lines.append(f"  [{state:12s}] {t['target']}: {worst} (target {t['threshold']:.3g})")
        for r in t["rows"]:
            v = "-" if r.get("value") is None else f"{r['value']:.3g}"
            lines.append(f"        {r['workload']:16s} {v:>9s}  {r.get('detail', '')}")
    return "\n".join(lines)
