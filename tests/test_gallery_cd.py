"""Smoke test of the gallery scripts of studies C and D (examples/study_c, _d).

Each script runs in a subprocess with ``CURVLAB_SMOKE=1`` (a budget of a few seconds: tiny data,
one epoch, a handful of Hessian-vector products) and the Agg backend, so that a broken
example fails the test suite and not only the docs build. The checks: the script exits cleanly,
writes nothing into its working directory, prints no line wider than 80 columns, and prints
each of its results tables (two per page) with one row per optimizer whose numbers are
consistent (accuracies in [0, 1], spreads, residuals and losses non-negative, the largest
eigenvalue not below the second, the original's quoted columns in their published ranges);
and each script reads as a sphinx-gallery page with the box, the hidden mode switches and
the comparison with the original.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from gallery_utils import (
    EXAMPLES,
    assert_gallery_page,
    assert_titled_readme,
    check_smoke_tables,
    table,
)


def _sd(x: str) -> float:
    v = float(x)
    assert v >= 0.0 or math.isnan(v)
    return v


def _c_end_row(cells):
    # optimizer, test acc, +-, lambda1, +-, lam_min, resid | orig acc, orig l1
    acc, lam1, lam_min = float(cells[1]), float(cells[3]), float(cells[5])
    _sd(cells[2]), _sd(cells[4]), _sd(cells[6])
    assert 0.0 <= acc <= 1.0
    assert lam1 > 0.0 and lam_min <= lam1
    assert cells[7] == "|" and 0.98 < float(cells[8]) < 1.0  # the original's accuracy
    assert 0.0 <= float(cells[9]) < 3.0  # the original's lambda1


def _c_gap_row(cells):
    # optimizer, n, mean, sd, sd seeds, below 1 | orig mean, orig sd, orig <1
    n, mean, below = int(cells[1]), float(cells[2]), float(cells[5])
    _sd(cells[3]), _sd(cells[4])
    assert n >= 1 and math.isfinite(mean)
    assert 0.0 <= below <= 1.0
    if below == 0.0:  # every ratio >= 1, so the mean is too
        assert mean >= 1.0
    assert cells[6] == "|"
    om, osd, ob = map(float, cells[7:10])
    assert 1.0 < om < 3.5 and osd > 0.0 and 0.0 <= ob < 0.1


def _d_acc_row(cells):
    # optimizer, test acc, +-, train loss, +- | orig MNIST, Fashion, CIFAR
    acc, loss = float(cells[1]), float(cells[3])
    _sd(cells[2]), _sd(cells[4])
    assert 0.0 <= acc <= 1.0 and loss >= 0.0
    assert cells[5] == "|"
    mnist, fashion, cifar = map(float, cells[6:9])
    assert 0.9 < mnist < 1.0 and 0.7 < fashion < 0.9 and 0.4 < cifar < 0.6


def _d_curv_row(cells):
    # optimizer, lambda1, +-, lambda2, +-, max resid, trace, +-
    lam1, lam2, res, trace = float(cells[1]), float(cells[3]), float(cells[5]), float(cells[6])
    _sd(cells[2]), _sd(cells[4]), _sd(cells[7])
    assert lam1 >= lam2 and res >= 0.0 and math.isfinite(trace)


C_ROWS = ["SGD", "Adam", "Adagrad", "AdaHessian"]
D_ROWS = ["Adam", "L-BFGS", "AdaHessian", "Apollo"]
# script -> list of (words of a table's header line, optimizer rows, row check)
SCRIPTS = {
    "study_c/plot_c_flatness_spectral_gap.py": [
        (["optimizer", "test acc", "lambda1", "lam_min", "orig acc"], C_ROWS, _c_end_row),
        (["optimizer", "mean", "sd seeds", "below 1", "orig mean"], C_ROWS, _c_gap_row),
    ],
    "study_d/plot_d_minima_landscapes.py": [
        (["optimizer", "test acc", "train loss", "orig MNIST"], D_ROWS, _d_acc_row),
        (["optimizer", "lambda1", "lambda2", "max resid", "trace"], D_ROWS, _d_curv_row),
    ],
}


@pytest.mark.parametrize("name", sorted(SCRIPTS), ids=lambda n: Path(n).stem)
def test_script_runs_in_smoke_mode(name, tmp_path):
    check_smoke_tables(name, tmp_path, SCRIPTS[name])


@pytest.mark.parametrize("name", sorted(SCRIPTS), ids=lambda n: Path(n).stem)
def test_script_is_a_gallery_page(name):
    """The study page's shape (gallery_utils.assert_gallery_page) and a comparison with
    the original."""
    source = assert_gallery_page(name)
    assert "Comparison with the original" in source
    assert "assert " in source  # claims printed and asserted


def test_study_d_embeds_plotly_offline():
    """The interactive surface inlines plotly.js (no CDN) and the static figure is the
    thumbnail."""
    source = (EXAMPLES / "study_d/plot_d_minima_landscapes.py").read_text()
    assert "include_plotlyjs=True" in source and "include_mathjax=False" in source
    assert "cdn" not in source.lower().replace("no cdn", "")
    assert "# sphinx_gallery_thumbnail_number = " in source


@pytest.mark.parametrize("folder", ["study_c", "study_d"])
def test_gallery_folder_has_a_titled_readme(folder):
    assert_titled_readme(folder)


def test_table_parser_rejects_a_missing_table():
    with pytest.raises(AssertionError, match="no table header"):
        table("nothing here\n", ["optimizer", "test acc"])
    with pytest.raises(AssertionError):  # accuracy above 1
        _c_end_row("SGD 1.5 0.01 2.0 0.1 -1.0 1e-3 | 0.9893 0.6189".split())
    with pytest.raises(AssertionError):  # no ratio below 1, yet a mean below 1
        _c_gap_row("SGD 12 0.9 0.1 0.05 0.00 | 2.933 0.273 0.00".split())
    with pytest.raises(AssertionError):  # lambda1 below lambda2
        _d_curv_row("Adam 1.0 0.1 2.0 0.1 1e-3 5.0 0.1".split())
    with pytest.raises(AssertionError):  # the original's columns swapped
        _d_acc_row("Adam 0.9 0.01 0.1 0.01 | 0.5641 0.8496 0.9816".split())
    _c_end_row("SGD 0.95 0.01 7.0 0.5 -0.5 1e-3 | 0.9893 0.6189".split())
    _c_gap_row("SGD 12 1.5 0.1 0.05 0.00 | 2.933 0.273 0.00".split())
    _d_acc_row("Adam 0.9 0.01 0.1 0.01 | 0.9816 0.8496 0.5641".split())
    _d_curv_row("Adam 2.0 0.1 1.0 0.1 1e-3 5.0 0.1".split())
