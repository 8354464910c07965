"""Render a results JSON into the tables of ``docs/benchmarks.rst`` and its bar chart.

``python -m benchmarks.render [benchmarks/results/latest.json]``

The tables replace the text between the ``.. BEGIN GENERATED RESULTS`` and
``.. END GENERATED RESULTS`` comments of ``docs/benchmarks.rst``; the chart is written to
``docs/_static/benchmarks.png``. Both are committed: building the docs never runs a
benchmark.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from .summary import LABELS, PEERS, default_run, task

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.rst"
CHART = ROOT / "docs" / "_static" / "benchmarks.png"
BEGIN = ".. BEGIN GENERATED RESULTS"
END = ".. END GENERATED RESULTS"


def _f(x, fmt="{:.2f}") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return fmt.format(x)


def _e(x) -> str:
    return _f(x, "{:.1e}")


def _g(x) -> str:
    if x is None:
        return "-"
    return _f(x, "{:.1f}") if x < 10 else _f(x, "{:,.0f}")


def _table(title: str, header: list[str], rows: list[list[str]], widths=None) -> list[str]:
    if not rows:
        return []
    out = [f".. list-table:: {title}", "   :header-rows: 1"]
    if widths:
        out.append(f"   :widths: {' '.join(str(w) for w in widths)}")
    out.append("")
    for row in [header, *rows]:
        cells = [str(c).replace("\n", " ") or "-" for c in row]
        out.append(f"   * - {cells[0]}")
        out.extend(f"     - {c}" for c in cells[1:])
    out.append("")
    return out


def _keys(res: dict) -> list[str]:
    return list(res.get("workloads", {}))


def _runs_lines(res: dict) -> list[str]:
    """For a merged file (:mod:`benchmarks.merge`): which run measured which workloads."""
    runs = res.get("runs") or []
    if len(runs) < 2:
        return []
    lines = [
        "",
        "Merged from runs on the same machine and settings; every table row compares "
        "libraries measured side by side in one run:",
        "",
    ]
    for r in runs:
        lines.append(
            f"* {(r.get('date') or '?')[:16].replace('T', ' ')} UTC, curvlab commit "
            f"{r.get('git_commit') or '?'}: {', '.join(r['workloads'])}"
            + (f" ({r['interrupted']})" if r.get("interrupted") else "")
        )
    return lines


def tables(res: dict) -> list[str]:
    """The generated reStructuredText (a list of lines)."""
    m = res["machine"]
    v = m.get("versions", {})
    kind = ("quick" if res.get("quick") else "full") + (
        " (all workloads)" if res.get("all_workloads") else ""
    )
    lines = [
        f"Latest results ({kind} run of {m['date'][:10]}): {m.get('cpu', '?')}, "
        f"{m.get('threads')} threads, device ``{m.get('device')}``"
        + (f" ({m['gpu']})" if m.get("gpu") else "")
        + f", torch {v.get('torch')}, curvlab {v.get('curvlab')} "
        f"(commit {m.get('git_commit') or '?'}), PyHessian {v.get('PyHessian')}, curvlinops "
        f"{v.get('curvlinops-for-pytorch')}, hessian-eigenthings {v.get('hessian-eigenthings')}, "
        f"torch-optimizer {v.get('torch-optimizer')}, BackPACK {v.get('backpack-for-pytorch')}."
        + (
            f" Load average during the run: {', '.join(f'{x:.1f}' for x in m['load_average'])}."
            if m.get("load_average")
            else ""
        ),
        *_runs_lines(res),
        "",
        ".. image:: _static/benchmarks.png",
        "   :alt: bar chart of the product cost and of the time to a top-1 eigenvalue at 1e-4",
        "   :width: 100%",
        "",
    ]

    # targets
    rows = []
    for t in res.get("targets", []):
        state = {True: "met", False: "**missed**", None: "not measured"}[t["met"]]
        detail = "; ".join(
            f"{r['workload']}: {_f(r.get('value'), '{:.3g}')}"
            + (f" ({r['detail']})" if r.get("detail") else "")
            for r in t["rows"]
        )
        rows.append(
            [
                t["target"],
                _f(t["threshold"], "{:.3g}"),
                _f(t["worst"], "{:.3g}"),
                state,
                detail or "-",
            ]
        )
    lines += ["Targets", "~~~~~~~", ""]
    lines += _table(
        "Targets of the benchmarks issue (worst case over the workloads measured)",
        ["target", "threshold", "measured", "status", "per workload"],
        rows,
        widths=[30, 8, 8, 8, 46],
    )

    # products
    rows = []
    for key in _keys(res):
        cl = task(res, key, "curvlab", "products")
        ph = task(res, key, "pyhessian", "products")
        cv = task(res, key, "curvlinops", "products")
        he = task(res, key, "hessian_eigenthings", "products")
        if not any((cl, ph, cv, he)):
            continue
        rows.append(
            [
                key,
                _f(cl and cl.get("hvp_plain")),
                _f(cl and cl.get("hvp_reuse")),
                _f(cl and cl.get("hvp_k8_per_column_reuse")),
                _f(cl and cl.get("ggn")),
                _f(ph and ph.get("hvp")),
                _f(cv and cv.get("hvp")),
                _f(cv and cv.get("hvp_k8_per_column")),
                _f(cv and cv.get("ggn")),
                _f(he and he.get("hvp")),
                _f(he and he.get("ggn")),
            ]
        )
    lines += ["Products", "~~~~~~~~", ""]
    lines += _table(
        "Cost of one curvature-vector product, in G (one full-data gradient)",
        [
            "workload",
            "curvlab HVP",
            "curvlab HVP, graph reuse",
            "curvlab HVP, k=8 per column",
            "curvlab GGN",
            "PyHessian HVP",
            "curvlinops HVP",
            "curvlinops HVP, k=8 per column",
            "curvlinops GGN",
            "h-eigenthings HVP",
            "h-eigenthings GGN",
        ],
        rows,
    )
    rows = []
    for key in _keys(res):
        row = [key]
        for a in ("curvlab", *PEERS):
            mm = task(res, key, a, "memory")
            row.append(_f(mm and mm.get("hvp_over_gradient")))
        if any(c != "-" for c in row[1:]):
            rows.append(row)
    lines += _table(
        "Peak memory of one HVP (no graph reuse) over one gradient's",
        ["workload", *(LABELS[a] for a in ("curvlab", *PEERS))],
        rows,
    )

    # eigenvalues
    for k_task, title in (("top1", "Top-1 eigenvalue"), ("top10", "Top-10 eigenvalues")):
        rows = []
        for key in _keys(res):
            for a in ("curvlab", *PEERS):
                eig = task(res, key, a, k_task)
                if eig is None:
                    continue
                d = default_run(eig)
                fast = next(
                    (r for r in eig["runs"] if r.get("label") == eig.get("fastest_reaching")),
                    None,
                )
                rows.append(
                    [
                        key,
                        LABELS[a],
                        _g(d and d["G"]),
                        _e(d and d.get("error")),
                        _f(d and d.get("matvecs"), "{}"),
                        _g(fast and fast["G"]),
                        _f(fast and fast.get("matvecs"), "{}"),
                        fast["label"] if fast else "not reached in the ladder",
                    ]
                )
        lines += [title, "~" * len(title), ""]
        lines += _table(
            f"{title}: the default call, and the cheapest setting tried that reaches a "
            "relative error of 1e-4 (time in G)",
            [
                "workload",
                "library",
                "default: time",
                "default: error",
                "default: products",
                "to 1e-4: time",
                "to 1e-4: products",
                "setting",
            ],
            rows,
            widths=[10, 14, 8, 8, 8, 8, 8, 36],
        )

    # trace
    rows = []
    for key in _keys(res):
        for a in ("curvlab", *PEERS):
            tr = task(res, key, a, "trace")
            if tr is None:
                continue
            for meth, r in tr.get("methods", {}).items():
                if "median_error" not in r:
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
        "Trace: median relative error over seeds at equal products, and time in G",
        ["workload", "library", "method", "products", "median error", "time"],
        rows,
    )

    # density
    rows = []
    for key in _keys(res):
        for a in ("curvlab", *PEERS):
            d = task(res, key, a, "density")
            if d and d.get("G"):
                rows.append([key, LABELS[a], f"{d['probes']} x {d['steps']}", _g(d["G"])])
    lines += ["Spectral density", "~~~~~~~~~~~~~~~~", ""]
    lines += _table(
        "Spectral density by stochastic Lanczos quadrature: probes x steps, time in G",
        ["workload", "library", "probes x steps", "time"],
        rows,
    )

    # optimizers
    rows = []
    for key in _keys(res):
        for a in ("curvlab", "torch_optimizer"):
            o = task(res, key, a, "optimizer")
            mem = task(res, key, a, "optimizer_memory")
            if not o:
                continue
            for name, r in o["steps_over_sgd"].items():
                mem_r = "-"
                if mem and name in ("AdaHessian (torch-optimizer preset)", "Adahessian"):
                    mem_r = _f(mem.get("adahessian_over_sgd"))
                rows.append([key, LABELS[a], name, _f(r), mem_r])
    lines += ["Optimizer steps", "~~~~~~~~~~~~~~~", ""]
    lines += _table(
        "One optimizer step on one batch of 128, in SGD steps (forward, backward, update)",
        ["workload", "library", "optimizer", "time", "peak memory"],
        rows,
    )

    # diagonal
    rows = []
    for key in _keys(res):
        bp = task(res, key, "backpack", "diagonal")
        if bp:
            for name, r in bp.items():
                if isinstance(r, dict) and "G" in r:
                    rows.append([key, "BackPACK", name, "exact", _g(r["G"])])
        for a in ("curvlab", "curvlinops"):
            d = task(res, key, a, "diagonal")
            for name in ("hutchinson", "xdiag"):
                if d and name in d:
                    rows.append(
                        [
                            key,
                            LABELS[a],
                            f"{name} ({d['matvecs']} products)",
                            _e(d[name].get("relative_error")),
                            _g(d[name]["G"]),
                        ]
                    )
    lines += ["Hessian diagonal", "~~~~~~~~~~~~~~~~", ""]
    lines += _table(
        "Hessian diagonal: relative error (2-norm) against the exact diagonal, time in G",
        ["workload", "library", "method", "error", "time"],
        rows,
    )

    # failures
    fails = []
    for key in _keys(res):
        for a, rec in res["workloads"][key].get("adapters", {}).items():
            if not isinstance(rec, dict):
                continue
            if "failed" in rec:
                fails.append(f"* {key}, {LABELS.get(a, a)}: {rec['failed'][:200]}")
            for t, e in rec.get("errors", {}).items():
                last = e.strip().splitlines()[-1][:200] if e.strip() else "?"
                fails.append(f"* {key}, {LABELS.get(a, a)}, {t}: ``{last}``")
    if fails:
        lines += ["Failures in this run", "~~~~~~~~~~~~~~~~~~~~", "", *fails, ""]
    return lines


def chart(res: dict, path: Path = CHART) -> Path | None:
    """Two grouped bar charts (log scale): HVP cost and time to a top-1 eigenvalue at 1e-4."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    libs = ["curvlab", *PEERS]
    keys = _keys(res)
    panels = []
    hvp = {a: [] for a in libs}
    for key in keys:
        for a in libs:
            p = task(res, key, a, "products")
            hvp[a].append(p.get("hvp") if p else None)
    panels.append(("one HVP, in G", hvp))
    top = {a: [] for a in libs}
    for key in keys:
        for a in libs:
            e = task(res, key, a, "top1")
            top[a].append(e.get("fastest_G") if e else None)
    panels.append(("top-1 eigenvalue to 1e-4, in G", top))
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.12, top=0.9, wspace=0.15)
    width = 0.8 / len(libs)
    for ax, (title, data) in zip(axes, panels):
        for i, a in enumerate(libs):
            xs = [j + (i - (len(libs) - 1) / 2) * width for j in range(len(keys))]
            have = [(x, y) for x, y in zip(xs, data[a]) if y]
            ax.bar(
                [x for x, _ in have], [y for _, y in have], width, label=LABELS[a], color=f"C{i}"
            )
            for x, y in zip(xs, data[a]):
                if not y:  # not measured: say so at the bottom of the axes
                    ax.text(
                        x,
                        0.02,
                        "n/a",
                        ha="center",
                        va="bottom",
                        fontsize=6,
                        rotation=90,
                        transform=ax.get_xaxis_transform(),
                    )
        ax.set_yscale("log")
        ax.set_xticks(range(len(keys)))
        ax.set_xticklabels(keys, fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    from matplotlib.patches import Patch

    handles = [Patch(color=f"C{i}", label=LABELS[a]) for i, a in enumerate(libs)]
    axes[0].legend(handles=handles, fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def render(results_path: Path, doc: Path = DOC, chart_path: Path = CHART) -> None:
    """Update ``doc`` between the markers and write the chart."""
    res = json.loads(Path(results_path).read_text())
    body = tables(res)
    text = doc.read_text()
    block = "\n".join([BEGIN, "", *body, END])
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    doc.write_text(text)
    chart(res, chart_path)
    print(f"updated {doc} and {chart_path}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("results", nargs="?", default=str(ROOT / "benchmarks/results/latest.json"))
    args = ap.parse_args(argv)
    render(Path(args.results))


if __name__ == "__main__":
    main()
