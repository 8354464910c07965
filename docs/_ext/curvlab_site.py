"""Build-time helpers of curvlab's site (imported by ``docs/conf.py``).

* :func:`gallery_style`: the one figure style of the gallery, applied by sphinx-gallery
  before every example (``reset_modules``).
* :func:`run_index_example`: runs ``docs/index_example.py`` at build time and writes its
  printed output and its figure under ``docs/_build/generated/``, so that the index page
  shows the output of the code it shows (it cannot go stale).
"""

from __future__ import annotations

import contextlib
import io
import runpy
import time
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1]
#: where build-time artefacts go (ignored by git, removed by ``make clean``)
GENERATED = DOCS / "_build" / "generated"
INDEX_EXAMPLE = DOCS / "index_example.py"

#: Okabe-Ito, a colour-blind-safe palette of eight distinguishable colours
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]

STYLE = {
    "axes.prop_cycle": None,  # filled in by gallery_style (needs matplotlib's cycler)
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "lines.linewidth": 1.8,
    "legend.frameon": False,
    "legend.fontsize": "small",
    "axes.titlesize": "medium",
    "figure.dpi": 100,
    "savefig.bbox": "tight",
}


def apply_style() -> None:
    """Set the gallery's figure style in matplotlib's rcParams."""
    import matplotlib as mpl
    from cycler import cycler

    style = dict(STYLE, **{"axes.prop_cycle": cycler(color=PALETTE)})
    mpl.rcParams.update(style)


def gallery_style(gallery_conf, fname, when=None) -> None:
    """sphinx-gallery resetter (``reset_modules``): the gallery's figure style, applied after
    sphinx-gallery's own matplotlib reset, before each example runs."""
    apply_style()


def run_index_example(app=None) -> None:
    """Run ``index_example.py``; write its output (``index_example.txt``) and a figure of its
    spectral density with the top eigenvalues marked (``index_figure.png``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    GENERATED.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(buf):
        ns = runpy.run_path(str(INDEX_EXAMPLE), run_name="__main__")
    seconds = time.perf_counter() - t0
    (GENERATED / "index_example.txt").write_text(buf.getvalue())

    import curvlab as cl

    with matplotlib.rc_context():
        apply_style()
        fig, ax = plt.subplots(figsize=(7.0, 2.8))
        cl.plot.density(ns["density"], log=True, ax=ax, color=PALETTE[0], label="density (SLQ)")
        for i, lam in enumerate(ns["top"].eigenvalues.tolist()):
            ax.axvline(
                lam,
                color=PALETTE[3],
                linestyle="--",
                linewidth=1.0,
                label="top-3 eigenvalues (eigsh)" if i == 0 else None,
            )
        # the log scale floors empty regions at 1e-12 of the peak; show five decades
        peak = max(line.get_ydata().max() for line in ax.lines[:1])
        ax.set_ylim(bottom=peak * 1e-5)
        ax.set_title("Hessian eigenvalue density of a digits MLP at initialization (2,410 params)")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
        fig.savefig(GENERATED / "index_figure.png", dpi=120, bbox_inches="tight")
        plt.close(fig)
    if app is not None:
        from sphinx.util import logging

        logging.getLogger(__name__).info(f"index example ran in {seconds:.1f} s")
