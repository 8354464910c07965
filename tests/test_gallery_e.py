"""Smoke test of the gallery scripts of study E (examples/study_e).

Each script runs in a subprocess with ``CURVLAB_SMOKE=1`` (a budget of a few seconds: tiny data,
one or two epochs, a handful of Hessian-vector products) and the Agg backend, so that a broken
example fails the test suite and not only the docs build. The checks: the script exits cleanly,
writes nothing into its working directory, and prints its results table with one row per
optimizer whose numbers are consistent (accuracies in [0, 1], residuals and losses
non-negative, the largest eigenvalue not below the second); and each script reads as a
sphinx-gallery page that compares its result with the original's.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from gallery_utils import (
    assert_gallery_page,
    assert_titled_readme,
    check_smoke_tables,
    table,
)


def _e1_row(cells):
    # optimizer, epoch (or "never"), 4 coefficients (or "-") | final mse, 4 coefficients
    bar = cells.index("|")
    assert bar == 6
    if cells[1] != "never":
        assert float(cells[1]) >= 0 and all(float(c) >= 0 for c in cells[2:6])
    final = [float(c) for c in cells[bar + 1 :]]
    assert len(final) == 5 and all(math.isfinite(v) and v >= 0 for v in final)


def _e2_accuracy_row(cells):
    # optimizer, final train loss, val acc, sd, test acc, sd (over seeds)
    loss, val, val_sd, test, test_sd = map(float, cells[1:6])
    assert len(cells) == 6 and loss >= 0
    assert 0.0 <= val <= 1.0 and 0.0 <= test <= 1.0
    assert 0.0 <= val_sd <= 0.5 and 0.0 <= test_sd <= 0.5


def _nonneg_row(n):
    def check(cells):
        vals = [float(c) for c in cells[1:]]
        assert len(vals) == n and all(math.isfinite(v) and v >= 0 for v in vals)

    return check


def _correlation_row(cells):
    # scope, number of points, Pearson and Spearman for two metrics
    n = int(cells[1])
    rs = [float(c) for c in cells[2:]]
    assert n >= 2 and len(rs) == 4 and all(-1.0 <= r <= 1.0 for r in rs)


def _e3_final_row(cells):
    # optimizer, loss, val acc, sd, radial error low / high rings, study's error low / high |k|
    loss, val, sd, *errs = map(float, cells[1:])
    assert len(cells) == 8 and loss >= 0 and 0.0 <= val <= 1.0 and 0.0 <= sd <= 0.5
    assert all(math.isfinite(e) and e >= 0 for e in errs)


def _e3_weight_row(cells):
    # index 0-9, |k| = 10 - index, Lasso weights / max |weight|: seed-averaged, per seed, original
    index, k = int(cells[0]), int(cells[1])
    assert k == 10 - index
    assert all(-1.0 <= float(w) <= 1.0 for w in cells[2:5]) and len(cells) == 5


E_OPTS = ["SGD", "Adam", "AdaHessian", "SCRN"]
# script -> tables: (words of the table's header line, row labels, row check)
SCRIPTS = {
    "study_e/plot_e1_sinusoids.py": [
        (["optimizer", "epoch", "f=8", "final mse"], E_OPTS, _e1_row),
    ],
    "study_e/plot_e2_digits_projection.py": [
        (["optimizer", "loss", "val acc", "test acc"], E_OPTS, _e2_accuracy_row),
        (["optimizer", "study|k|<=5", "curv k<=5", "e_high"], E_OPTS, _nonneg_row(6)),
        (["points", "study r", "curv r"], ["all", *E_OPTS], _correlation_row),
    ],
    "study_e/plot_e3_segmentation.py": [
        (["optimizer", "loss", "val acc", "r<=4", "|k|>5"], E_OPTS, _e3_final_row),
        (["index", "|k|", "avg", "seeds", "original"], [str(i) for i in range(10)], _e3_weight_row),
    ],
}


@pytest.mark.parametrize("name", sorted(SCRIPTS), ids=lambda n: Path(n).stem)
def test_script_runs_in_smoke_mode(name, tmp_path):
    stdout = check_smoke_tables(name, tmp_path, SCRIPTS[name])
    assert "Findings" in stdout


@pytest.mark.parametrize("name", sorted(SCRIPTS), ids=lambda n: Path(n).stem)
def test_script_is_a_gallery_page(name):
    """The study page's shape (gallery_utils.assert_gallery_page) and a comparison with
    the original."""
    source = assert_gallery_page(name)
    assert "Comparison with the original" in source


@pytest.mark.parametrize("folder", ["study_e"])
def test_gallery_folder_has_a_titled_readme(folder):
    assert_titled_readme(folder)


def test_table_parser_rejects_a_missing_table():
    with pytest.raises(AssertionError, match="no table header"):
        table("nothing here\n", ["optimizer", "test acc"])
