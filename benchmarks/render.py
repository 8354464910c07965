"""Render a results JSON into ``docs/benchmarks.rst``: the summary, the chart, the appendix.

``python -m benchmarks.render [benchmarks/results/latest.json]``

Two blocks of the page are generated, each between its ``.. BEGIN GENERATED <NAME>`` and
``.. END GENERATED <NAME>`` comments: ``SUMMARY`` (the table of curvlab against each peer on
each workload, the chart) and ``APPENDIX`` (the raw tables). The chart is written to
``docs/_static/benchmarks.png`` and a copy of the results, without local paths, to
``docs/_static/bench_results.json`` (linked from the page). Everything is committed:
building the docs never runs a benchmark. The targets of the benchmark issues stay in the
results JSON (``targets``); the page shows results, not a project log.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from .summary import LABELS, PEERS, default_run, oracle_counts, run_by_label, task

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.rst"
CHART = ROOT / "docs" / "_static" / "benchmarks.png"
JSON_COPY = ROOT / "docs" / "_static" / "bench_results.json"
BLOCKS = ("SUMMARY", "APPENDIX")
WORKLOADS = ("W1", "W2", "W3", "W4")
#: preformatted lines and chart labels stay within this width
MAX_LINE = 80


def begin(name: str) -> str:
    return f".. BEGIN GENERATED {name}"


def end(name: str) -> str:
    return f".. END GENERATED {name}"


# ------------------------------------------------------------------------------------------
# formatting
# ------------------------------------------------------------------------------------------
def _ok(x) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def _f(x, fmt="{:.2f}") -> str:
    return fmt.format(x) if _ok(x) else "-"


def _e(x) -> str:
    """An error, one significant digit: 3e-8, 2e-2."""
    if not _ok(x):
        return "-"
    if x == 0:
        return "0"
    m, e = f"{x:.0e}".split("e")
    return f"{m}e{int(e)}"


def _g(x) -> str:
    """A cost in G: 3 significant digits at most."""
    if not _ok(x):
        return "-"
    return f"{x:.2f}" if x < 10 else (f"{x:.1f}" if x < 100 else f"{x:,.0f}")


def _sci(x) -> str:
    """1e-4, 2.5e-3 (no zero-padded exponent); plain below 4 digits."""
    if not _ok(x) or x == 0 or 1e-3 <= abs(x) < 1e4:
        return f"{x:g}" if _ok(x) else "-"
    m, e = f"{x:.1e}".split("e")
    return f"{m.rstrip('0').rstrip('.')}e{int(e)}"


def _x(x) -> str:
    """A ratio: 2.4x."""
    return f"{x:.2f}x" if _ok(x) and x < 10 else (f"{x:.0f}x" if _ok(x) else "-")


def _rng(lo_hi, fmt=_g) -> str:
    if not lo_hi:
        return ""
    lo, hi = lo_hi
    return f" ({fmt(lo)}-{fmt(hi)})" if lo != hi else ""


def _table(title: str, header: list[str], rows: list[list], widths=None) -> list[str]:
    """A ``list-table`` (cells wrap; the theme scrolls it inside the page if still wide).
    A cell given as a list of strings becomes a line block."""
    if not rows:
        return []
    out = [f".. list-table:: {title}", "   :header-rows: 1"]
    if widths:
        out.append(f"   :widths: {' '.join(str(w) for w in widths)}")
    out.append("")
    for row in [header, *rows]:
        for i, cell in enumerate(row):
            lead = "   * - " if i == 0 else "     - "
            if isinstance(cell, list | tuple):
                parts = [str(c) for c in cell if str(c)] or ["-"]
                out.append(f"{lead}| {parts[0]}")
                out.extend(f"       | {c}" for c in parts[1:])
            else:
                out.append(f"{lead}{str(cell).replace(chr(10), ' ') or '-'}")
    out.append("")
    return out


def _keys(res: dict) -> list[str]:
    return list(res.get("workloads", {}))


def summary_key(res: dict, w: str) -> str | None:
    """The entry of workload ``w`` the summary shows: after training where measured."""
    for state in ("trained", "init"):
        if f"{w}/{state}" in res.get("workloads", {}):
            return f"{w}/{state}"
    return None


# ------------------------------------------------------------------------------------------
# the comparisons of the summary (one place: the table and the chart use them)
# ------------------------------------------------------------------------------------------
def worst_error(run: dict | None) -> float | None:
    """The worst error over the seeds of a ladder run (the error of files with one seed)."""
    if not run:
        return None
    return run.get("error_max", run.get("error"))


def curvlab_eig(res: dict, key: str, k_task: str) -> tuple[float | None, dict | None]:
    """curvlab's time for an eigenvalue task: its default call where the default reached
    the target on every seed (else the fastest setting that did), and that run."""
    eig = task(res, key, "curvlab", k_task)
    d = default_run(eig)
    if d is not None and d.get("reached"):
        return d["G"], d
    fast = run_by_label(eig, (eig or {}).get("fastest_reaching"))
    return (fast["G"], fast) if fast else (None, d)


def eig_comparison(res: dict, key: str, peer: str, k_task: str) -> dict | None:
    """Peer against curvlab on an eigenvalue task: ``speedup`` (the peer's fastest setting
    reaching the target over curvlab's default call; ``None`` if the peer never reached it)
    and the worst default-call error over the seeds of each."""
    pe = task(res, key, peer, k_task)
    c_time, c_run = curvlab_eig(res, key, k_task)
    if pe is None or c_time is None:
        return None
    pd, cd = default_run(pe), default_run(task(res, key, "curvlab", k_task))
    return {
        "speedup": pe["fastest_G"] / c_time if pe.get("fastest_G") else None,
        "curvlab_error": worst_error(cd),
        "peer_error": worst_error(pd),
        "curvlab_default": bool(c_run and c_run.get("default")),
    }


def adahessian_comparison(res: dict, key: str) -> dict | None:
    o = task(res, key, "curvlab", "optimizer")
    st = (o or {}).get("steps_over_sgd", {})
    a, b = st.get("AdaHessian (torch-optimizer preset)"), st.get("torch-optimizer Adahessian")
    if not (a and b):
        return None
    cm = task(res, key, "curvlab", "optimizer_memory") or {}
    tm = task(res, key, "torch_optimizer", "optimizer_memory") or {}
    mem = None
    if cm.get("adahessian_bytes") and tm.get("adahessian_bytes"):
        mem = cm["adahessian_bytes"] / tm["adahessian_bytes"]
    return {"speedup": b / a, "memory": mem}


def density_comparison(res: dict, key: str) -> dict | None:
    cl, ph = task(res, key, "curvlab", "density"), task(res, key, "pyhessian", "density")
    if not (cl and ph and cl.get("one_probe_G") and ph.get("G")):
        return None
    return {"speedup": ph["G"] / cl["one_probe_G"], "ten_probes_over_peer": cl["G"] / ph["G"]}


# ------------------------------------------------------------------------------------------
# the summary block
# ------------------------------------------------------------------------------------------
def _machine_line(res: dict) -> str:
    m = res["machine"]
    v = m.get("versions", {})
    dev = m.get("device", "cpu")
    where = m.get("gpu") or m.get("cpu", "?")
    runs = res.get("runs") or []
    dates = sorted((r.get("date") or "")[:10] for r in runs if r.get("date"))
    when = m["date"][:10]
    if len(runs) > 1 and dates:
        span = dates[0] if dates[0] == dates[-1] else f"{dates[0]} to {dates[-1]}"
        when = f"{span} ({len(runs)} runs, merged per workload)"
    return (
        f"Measured on {when}: {where}, {m.get('threads')} "
        f"thread{'s' if m.get('threads') != 1 else ''}, device "
        f"``{dev}``, torch {v.get('torch')}, curvlab {v.get('curvlab')}, PyHessian "
        f"{v.get('PyHessian')}, curvlinops {v.get('curvlinops-for-pytorch')}, "
        f"hessian-eigenthings {v.get('hessian-eigenthings')}, torch-optimizer "
        f"{v.get('torch-optimizer')}."
    )


def summary_workloads(res: dict) -> list[str]:
    """The workloads of the summary: those measured in this run, in order."""
    return [w for w in WORKLOADS if summary_key(res, w)]


def summary_rows(res: dict) -> list[list]:
    keys = [summary_key(res, w) for w in summary_workloads(res)]
    tol = res.get("config", {}).get("target_error", 1e-4)
    k = res.get("config", {}).get("top_k", 10)
    rows = []
    for peer in PEERS:
        for k_task, name in (("top1", "top eigenvalue"), ("top10", f"top {k} eigenvalues")):
            cells = []
            for key in keys:
                c = eig_comparison(res, key, peer, k_task) if key else None
                if c is None:
                    cells.append("-")
                    continue
                speed = _x(c["speedup"]) if c["speedup"] else f"never at {_sci(tol)}"
                cells.append([speed, f"{_e(c['curvlab_error'])} vs {_e(c['peer_error'])}"])
            if any(c != "-" for c in cells):
                rows.append([LABELS[peer], name, *cells])
        if peer == "pyhessian":
            cells = []
            for key in keys:
                c = density_comparison(res, key) if key else None
                cells.append("-" if c is None else [_x(c["speedup"]), "1 probe each"])
            if any(c != "-" for c in cells):
                rows.append([LABELS[peer], "spectral density", *cells])
    cells = []
    for key in keys:
        c = adahessian_comparison(res, key) if key else None
        cells.append(
            "-"
            if c is None
            else [_x(c["speedup"]), f"memory {_f(c['memory'])}x" if c["memory"] else ""]
        )
    if any(c != "-" for c in cells):
        rows.append(["torch-optimizer", "AdaHessian step", *cells])
    return rows


def _correct_by_default(res: dict) -> list[str]:
    """The sentence on what "correct by default" means, with this run's figures."""
    tol = res.get("config", {}).get("target_error", 1e-4)
    seeds = res.get("config", {}).get("seeds", 1)
    worst_cl, worst_peer = [], {}
    for key in _keys(res):
        for k_task in ("top1", "top10"):
            e = worst_error(default_run(task(res, key, "curvlab", k_task)))
            if e is not None:
                worst_cl.append(e)
            for p in PEERS:
                pe = worst_error(default_run(task(res, key, p, k_task)))
                if pe is not None:
                    worst_peer[p] = max(worst_peer.get(p, 0.0), pe)
    if not worst_cl:
        return []
    ok = max(worst_cl) <= tol
    peers = ", ".join(f"{LABELS[p]} {_e(e)}" for p, e in worst_peer.items())
    return [
        f"**Correct by default** means that the call with no options returns the requested "
        f"eigenvalues (the largest algebraic ones) within a relative error of {_sci(tol)} of a "
        f"float64 reference, on every workload and each of {seeds} seeds, so that no "
        f"tolerance has to be tuned with hindsight. The worst error of curvlab's default "
        f"``eigsh`` call in this run is {_e(max(worst_cl))}"
        + ("" if ok else f", above {_sci(tol)} on some runs")
        + (f"; of the peers' default calls: {peers}." if peers else "."),
        "",
    ]


def summary_block(res: dict, chart_name: str = "benchmarks.png") -> list[str]:
    tol = res.get("config", {}).get("target_error", 1e-4)
    seeds = res.get("config", {}).get("seeds", 1)
    lines = [
        _machine_line(res),
        "",
        f"Each cell: how many times faster curvlab is than the peer (the peer's time over "
        f"curvlab's; above 1: curvlab is faster), then the worst relative error over {seeds} "
        f"seeds of each library's default call (curvlab vs peer). For eigenvalues the peer "
        f"gets its fastest setting that reaches {_sci(tol)} (picked with hindsight from a "
        f"ladder of settings) and curvlab its default call. The spectral density compares "
        f"one probe of 100 Lanczos steps each; the AdaHessian step, torch-optimizer's "
        f"against curvlab's preset of it, timed round-robin in one process (second line: "
        f"peak memory, curvlab over torch-optimizer). Workloads after training, described "
        f"below.",
        "",
    ]
    lines += _table(
        "curvlab against each peer (speed-up; default error, curvlab vs peer)",
        ["peer", "task", *summary_workloads(res)],
        summary_rows(res),
        widths=[18, 18, *[16] * len(summary_workloads(res))],
    )
    lines += _correct_by_default(res)
    lines += [
        f".. image:: _static/{chart_name}",
        "   :alt: dot chart of how many times faster curvlab is than each peer, per "
        "workload and task, with a line at 1 (the same speed)",
        "   :width: 100%",
        "",
    ]
    lines += _weak_spots(res)
    return lines


def _weak_spots(res: dict) -> list[str]:
    """Where curvlab is not ahead, with the reason (generated: it quotes this run)."""
    out = []
    ratios = [
        (key, c["ten_probes_over_peer"])
        for key in _keys(res)
        if (c := density_comparison(res, key)) is not None
    ]
    if ratios:
        lo, hi = min(r for _, r in ratios), max(r for _, r in ratios)
        speed = [density_comparison(res, key)["speedup"] for key, _ in ratios]
        one = _span(min(speed), max(speed), "{:.1f}")
        floors = []
        for key, _ in ratios:
            cl, pr = task(res, key, "curvlab", "density"), task(res, key, "curvlab", "products")
            if cl and pr and pr.get("hvp_reuse"):
                floors.append(cl["G"] / (cl["probes"] * cl["steps"] * pr["hvp_reuse"]))
        floor = ""
        if floors:
            floor = (
                f" curvlab's 10-probe run costs {_span(min(floors), max(floors), '{:.2f}')} "
                "times its 1,000 products at the cost of one product with kept graphs each"
                + (
                    ": the difference is the number of probes, not overhead."
                    if max(floors) <= 1.15
                    else "; the rest is the solver's own work (reorthogonalization and "
                    "bookkeeping) and the wider products of ten probes at once."
                )
            )
        out.append(
            f"* **Spectral density.** At one probe curvlab is {one} times as fast as "
            f"PyHessian (table above), but its default of 10 probes costs "
            f"{_span(lo, hi, '{:.1f}')} times PyHessian's single probe: "
            f"the density is an average over probes, and ten of them divide the spread "
            f"that comes from the random start by about sqrt(10)." + floor
        )
    diag = [
        (key, d)
        for key in _keys(res)
        if (d := task(res, key, "curvlab", "diagonal")) and d.get("spectrum")
    ]
    if diag:
        parts = []
        for key, d in diag:
            s, m = d["spectrum"], d["matvecs"]
            errs = [d[x].get("relative_error") for x in ("hutchinson", "xdiag") if x in d]
            errs = [e for e in errs if e is not None]
            rest = (1 - s["top10_share"]) * s["frobenius2"] / s["diagonal2"]
            parts.append(
                f"on {key} the diagonal carries {100 * s['diagonal2'] / s['frobenius2']:.1f} % "
                f"of ||H||_F^2 and the off-diagonal part {s['offdiag_over_diag']:.0f} times "
                f"the diagonal's energy; the 10 largest eigenvalues carry "
                f"{100 * s['top10_share']:.0f} % of ||H||_F^2, and what is left outside them "
                f"is still {rest:.0f} times the diagonal's energy. Hutchinson's error at {m} "
                f"products should then be about sqrt({s['offdiag_over_diag']:.0f}/{m}) = "
                f"{100 * s['hutchinson_predicted_error']:.0f} %; the measured errors are "
                f"{_range_pct(errs)}"
            )
        out.append(
            "* **Hessian diagonal.** The stochastic diagonal estimators (Hutchinson and XDiag, "
            "curvlab's and curvlinops' alike) are not accurate on these Hessians at tens of "
            "products, because a network Hessian's diagonal is a small part of the matrix: "
            + "; ".join(parts)
            + ". XDiag removes the part of the few largest eigenvalues, but its error is set "
            "by what remains, measured against the diagonal itself, so it helps only when the "
            "remainder is small next to the diagonal. For an accurate diagonal use an exact "
            "one (BackPACK's ``DiagHessian``, or the GGN's diagonal); see "
            ":doc:`user_guide/estimators`."
        )
    return ([*out, ""]) if out else []


def _span(lo: float, hi: float, fmt: str) -> str:
    a, b = fmt.format(lo), fmt.format(hi)
    return a if a == b else f"{a}-{b}"


def _range_pct(errs: list[float]) -> str:
    if not errs:
        return "-"
    lo, hi = min(errs), max(errs)
    return (
        f"{100 * lo:.0f} %"
        if round(100 * lo) == round(100 * hi)
        else f"{100 * lo:.0f}-{100 * hi:.0f} %"
    )


# ------------------------------------------------------------------------------------------
# the appendix
# ------------------------------------------------------------------------------------------
def appendix_block(res: dict, json_name: str = "bench_results.json") -> list[str]:
    seeds = res.get("config", {}).get("seeds", 1)
    lines = [
        f"All figures of this run, as JSON: :download:`{json_name} <_static/{json_name}>` "
        "(the same file as ``benchmarks/results/latest.json``, without local paths).",
        "",
    ]
    keys = _keys(res)

    # products: curvlab, with the FLOP floors
    rows = []
    for key in keys:
        p = task(res, key, "curvlab", "products")
        if not p:
            continue
        fl = p.get("flop_G") or {}
        rows.append(
            [
                key,
                _g(p.get("hvp_plain")),
                _g(p.get("hvp_reuse")),
                _g(fl.get("hvp_reuse")),
                _g(p.get("hvp_k8_per_column_reuse")),
                _g(fl.get("hvp_k8_per_column_reuse")),
                _g(p.get("ggn")),
            ]
        )
    lines += ["Products", "~~~~~~~~", ""]
    lines += _table(
        "curvlab: one product in G (one full-data gradient), and its FLOPs in G",
        ["workload", "HVP", "kept graphs", "FLOPs", "k=8, per col.", "FLOPs", "GGN"],
        rows,
    )
    rows = []
    for key in keys:
        row = [key]
        for a in PEERS:
            p = task(res, key, a, "products") or {}
            fl = (p.get("flop_G") or {}).get("hvp")
            row.append(f"{_g(p.get('hvp'))} ({_g(fl)})" if p else "-")
        if any(c != "-" for c in row[1:]):
            rows.append(row)
    lines += _table(
        "The peers' HVP in G (its FLOPs in G)",
        ["workload", *(LABELS[a] for a in PEERS)],
        rows,
    )
    lines += [
        "FLOPs in G: the matrix-multiply and convolution FLOPs of the call "
        "(``torch.utils.flop_counter.FlopCounterMode``) over those of one gradient, the "
        "dense work of the product in gradients. On these small models a gradient's time is "
        "not all matrix multiplies, so a product's measured time in G can fall below it; "
        "the gap between the columns shows the overhead a library adds.",
        "",
    ]
    rows = []
    for key in keys:
        row = [key]
        for a in ("curvlab", *PEERS):
            mm = task(res, key, a, "memory")
            row.append(_f(mm and mm.get("hvp_over_gradient")))
        if any(c != "-" for c in row[1:]):
            rows.append(row)
    lines += _table(
        "Peak memory of one HVP (graphs not kept) over one gradient's",
        ["workload", *(LABELS[a] for a in ("curvlab", *PEERS))],
        rows,
    )

    # eigenvalues
    for k_task, title in (("top1", "Top eigenvalue"), ("top10", "Top-10 eigenvalues")):
        rows = []
        for key in keys:
            k = 1 if k_task == "top1" else res.get("config", {}).get("top_k", 10)
            orc = oracle_counts(res, key, k)
            if orc and task(res, key, "curvlab", k_task):
                lo, hi = min(orc), max(orc)
                med = sorted(orc)[len(orc) // 2]
                rows.append(
                    [
                        key,
                        "oracle",
                        "float64 Lanczos, stopped with hindsight",
                        "-",
                        f"{med}" + (f" ({lo}-{hi})" if lo != hi else ""),
                        "-",
                    ]
                )
            for a in ("curvlab", *PEERS):
                eig = task(res, key, a, k_task)
                if eig is None:
                    continue
                for r in eig["runs"]:
                    if "G" not in r:
                        continue
                    label = r["label"] + (" (default)" if r.get("default") else "")
                    mv = r.get("matvecs")
                    rows.append(
                        [
                            key,
                            LABELS[a],
                            label,
                            _g(r["G"]) + _rng(r.get("G_range")),
                            (f"{mv:g}" if _ok(mv) else "-")
                            + _rng(r.get("matvecs_range"), lambda x: f"{x:g}"),
                            _e(worst_error(r)),
                        ]
                    )
        lines += [title, "~" * len(title), ""]
        lines += _table(
            f"{title}: time in G and products, median (range) over {seeds} seeds, and the "
            "worst relative error",
            ["workload", "library", "setting", "time", "products", "error"],
            rows,
            widths=[12, 14, 34, 14, 14, 12],
        )

    # trace
    rows = []
    for key in keys:
        for a in ("curvlab", *PEERS):
            tr = task(res, key, a, "trace")
            if tr is None:
                continue
            for meth, r in tr.get("methods", {}).items():
                if r.get("median_error") is None:
                    continue
                rows.append(
                    [key, LABELS[a], meth, str(tr["matvecs"]), _e(r["median_error"]), _g(r["G"])]
                )
            if "default" in tr:
                d = tr["default"]
                rows.append(
                    [key, LABELS[a], "default call", str(d["matvecs"]), _e(d["error"]), _g(d["G"])]
                )
    lines += ["Trace", "~~~~~", ""]
    lines += _table(
        "Trace: median relative error over seeds at equal products, time in G",
        ["workload", "library", "method", "products", "error", "time"],
        rows,
    )

    # density
    rows = []
    for key in keys:
        for a in ("curvlab", *PEERS):
            d = task(res, key, a, "density")
            if d and d.get("G"):
                rows.append([key, LABELS[a], f"{d['probes']} x {d['steps']}", _g(d["G"])])
                if a == "curvlab" and d.get("one_probe_G"):
                    rows.append([key, LABELS[a], f"1 x {d['steps']}", _g(d["one_probe_G"])])
    lines += ["Spectral density", "~~~~~~~~~~~~~~~~", ""]
    lines += _table(
        "Stochastic Lanczos quadrature: probes x steps, time in G",
        ["workload", "library", "probes x steps", "time"],
        rows,
    )

    # optimizers
    rows = []
    for key in keys:
        o = task(res, key, "curvlab", "optimizer")
        if not o:
            continue
        for name, r in o["steps_over_sgd"].items():
            rows.append([key, name, _f(r)])
    lines += ["Optimizer steps", "~~~~~~~~~~~~~~~", ""]
    lines += _table(
        "One optimizer step on one batch of 128 in SGD steps, timed round-robin in one process",
        ["workload", "optimizer", "time"],
        rows,
    )

    # diagonal
    rows = []
    for key in keys:
        bp = task(res, key, "backpack", "diagonal")
        for name, r in (bp or {}).items():
            if isinstance(r, dict) and "G" in r:
                rows.append([key, "BackPACK", name, "exact", _g(r["G"])])
        for a in ("curvlab", "curvlinops"):
            d = task(res, key, a, "diagonal")
            for name in ("hutchinson", "xdiag"):
                if d and name in d:
                    err = d[name].get("relative_error")
                    rows.append(
                        [
                            key,
                            LABELS[a],
                            f"{name}, {d['matvecs']} products",
                            f"{100 * err:.0f} %" if _ok(err) else "-",
                            _g(d[name]["G"]),
                        ]
                    )
    lines += ["Hessian diagonal", "~~~~~~~~~~~~~~~~", ""]
    lines += _table(
        "Hessian diagonal: relative error (2-norm) against the exact diagonal, time in G",
        ["workload", "library", "method", "error", "time"],
        rows,
    )
    return lines


# ------------------------------------------------------------------------------------------
# the chart
# ------------------------------------------------------------------------------------------
def chart_points(res: dict) -> list[tuple[str, str, float | None]]:
    """``(row label, peer label, speed-up or None if the peer never reached the target)``
    for every comparison of the summary table, in display order."""
    pts = []
    k = res.get("config", {}).get("top_k", 10)
    for w in WORKLOADS:
        key = summary_key(res, w)
        if key is None:
            continue
        for k_task, name in (("top1", "top eigenvalue"), ("top10", f"top {k}")):
            for p in PEERS:
                c = eig_comparison(res, key, p, k_task)
                if c is not None:
                    pts.append((f"{w}: {name}", LABELS[p], c["speedup"]))
        c = density_comparison(res, key)
        if c is not None:
            pts.append((f"{w}: density, 1 probe", LABELS["pyhessian"], c["speedup"]))
        c = adahessian_comparison(res, key)
        if c is not None:
            pts.append((f"{w}: AdaHessian step", "torch-optimizer", c["speedup"]))
    return pts


def chart(res: dict, path: Path = CHART) -> Path | None:
    """One dot chart, linear axis: how many times faster curvlab is than each peer, one row
    per workload and task, a line at 1 (the same speed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = chart_points(res)
    if not pts:
        return None
    rows = list(dict.fromkeys(r for r, _, _ in pts))
    peers = list(dict.fromkeys(p for _, p, _ in pts))
    style = {
        "PyHessian": ("o", "#1f77b4"),
        "curvlinops": ("s", "#ff7f0e"),
        "hessian-eigenthings": ("D", "#2ca02c"),
        "torch-optimizer": ("^", "#9467bd"),
    }
    finite = [v for _, _, v in pts if _ok(v)]
    xmax = max(2.0, min(max(finite, default=2.0) * 1.12, 12.0))
    fig, ax = plt.subplots(figsize=(10, 0.42 * len(rows) + 1.6))
    ax.axvspan(0, 1, color="#f2f2f2", zorder=0)
    ax.axvline(1.0, color="#444444", lw=1.2, zorder=1)
    ax.text(0.5, -0.9, "peer\nfaster", va="center", ha="center", fontsize=8, color="#555555")
    ax.text(
        (1 + xmax) / 2,
        -0.9,
        "curvlab faster",
        va="center",
        ha="center",
        fontsize=9,
        color="#555555",
    )
    for i in range(1, len(rows)):  # a thin line between workloads
        if rows[i].split(":")[0] != rows[i - 1].split(":")[0]:
            ax.axhline(i - 0.5, color="#dddddd", lw=0.8, zorder=0)
    offs = {p: (i - (len(peers) - 1) / 2) * 0.18 for i, p in enumerate(peers)}
    for row_label, peer, v in pts:
        y = rows.index(row_label) + offs[peer]
        marker, color = style.get(peer, ("o", "black"))
        if v is None:  # never reached the target: an open marker at the right edge
            ax.plot([xmax * 0.985], [y], marker, mfc="white", mec=color, ms=7, zorder=3)
        else:
            x = min(v, xmax * 0.985)
            ax.plot([x], [y], marker, color=color, ms=7, zorder=3)
            if v > xmax:
                ax.annotate(
                    f"{v:.0f}x",
                    (x, y),
                    xytext=(-6, 0),
                    textcoords="offset points",
                    ha="right",
                    va="center",
                    fontsize=8,
                    color=color,
                )
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(rows, fontsize=10)
    ax.set_ylim(len(rows) - 0.5, -1.4)
    ax.set_xlim(0, xmax)
    tol = res.get("config", {}).get("target_error", 1e-4)
    ax.set_xlabel(
        f"times faster than the peer: peer's time / curvlab's (1: the same speed; "
        f"eigenvalues: to a relative error of {_sci(tol)})",
        fontsize=10,
    )
    ax.grid(axis="x", alpha=0.3)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    from matplotlib.lines import Line2D

    handles = [
        Line2D(
            [],
            [],
            ls="",
            marker=style.get(p, ("o", "k"))[0],
            color=style.get(p, ("o", "k"))[1],
            ms=7,
            label=p,
        )
        for p in peers
    ]
    if any(v is None for _, _, v in pts):
        handles.append(
            Line2D(
                [],
                [],
                ls="",
                marker="o",
                mfc="white",
                mec="#444444",
                ms=7,
                label=f"peer never reached {_sci(tol)}",
            )
        )
    ax.legend(
        handles=handles,
        loc="lower center",
        bbox_to_anchor=(0.5, 1.0),
        ncol=len(handles),
        frameon=False,
        fontsize=10,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=140, bbox_inches="tight")
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------
def public_copy(res: dict) -> dict:
    """The results without local paths (log folder, cache files) for the page's download."""
    out = json.loads(json.dumps(res, default=float))
    out.pop("logs", None)
    out.pop("path", None)
    for entry in out.get("workloads", {}).values():
        ref = entry.get("reference") or {}
        ref.pop("diag_file", None)
    return out


def replace_block(text: str, name: str, body: list[str]) -> str:
    block = "\n".join([begin(name), "", *body, end(name)])
    if begin(name) in text and end(name) in text:
        head, rest = text.split(begin(name), 1)
        return head + block + rest.split(end(name), 1)[1]
    return text.rstrip("\n") + "\n\n" + block + "\n"


def render(
    results_path: Path,
    doc: Path = DOC,
    chart_path: Path = CHART,
    json_path: Path | None = None,
) -> None:
    """Update the generated blocks of ``doc``, write the chart and the public JSON copy."""
    res = json.loads(Path(results_path).read_text())
    json_path = json_path or chart_path.parent / JSON_COPY.name
    text = doc.read_text()
    text = replace_block(text, "SUMMARY", summary_block(res, chart_path.name))
    text = replace_block(text, "APPENDIX", appendix_block(res, json_path.name))
    doc.write_text(text)
    chart(res, chart_path)
    json_path.write_text(json.dumps(public_copy(res), indent=1))
    print(f"updated {doc}, {chart_path} and {json_path}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("results", nargs="?", default=str(ROOT / "benchmarks/results/latest.json"))
    args = ap.parse_args(argv)
    render(Path(args.results))


if __name__ == "__main__":
    main()
