"""Smoke test of the gallery scripts of study A (examples/study_a).

Each script runs in a subprocess with ``CURVLAB_SMOKE=1`` (a budget of a few seconds) and the
Agg backend, so that a broken example fails ``make test`` and not only ``make docs``. The
checks: the script exits cleanly, prints lines of at most 80 characters and its tables with
the expected rows, each row's numbers finite and within what a correct run can print (the
replica of the original's curves within 1e-6 of the logged values, medians between minima
and maxima, accuracies in [0, 1], ...); the page's asserted claim fails when the quoted data
is changed; and each script reads as a sphinx-gallery page (a title docstring; a README.txt
with a title for each folder).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from gallery_utils import (
    EXAMPLES,
    assert_fits_columns,
    assert_gallery_page,
    assert_titled_readme,
    run_smoke,
)

NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?|nan|inf", re.IGNORECASE)

A1_RUNS = ["GD+GD", "Adam+Adam", "GD+GradReg", "GD+Newton", "Adam+GradReg", "Adam+Newton"]
A2_RUNS = ["GD", "GD+GradReg", "GD+Newton", "Adam", "Adam+GradReg", "Adam+Newton"]
A3_RUNS = ["Adam", "SGD", "Adam + L-BFGS (last)", "Adam + gradreg (last)"]


def _a1_replica(cells):
    """original final, curvlab final, max rel. dev.: the losses agree to float32 rounding."""
    original, ours, dev = cells
    assert 9_000 < original < 60_000 and 9_000 < ours < 60_000
    assert 0 <= dev < 1e-6


def _a1_fixed(cells):
    """F - F* @10, F - F* @end (medians), min and max at the end: min <= median <= max."""
    early, final, lo, hi = cells
    assert early >= 0 and 0 <= lo <= final <= hi
    assert final <= early * (1 + 1e-9)  # no fixed run ends above where it was at step 10


def _a2(cells):
    """post-step batch, sd, full data, sd, full - floor (a finite run is near the floor)."""
    rep, rep_sd, full, full_sd, gap = cells
    assert 0.5 < rep < 1e3 and 0.5 < full < 1e3 and rep_sd >= 0 and full_sd >= 0
    assert abs(gap) < full


def _a3(cells):
    """test acc, sd, BN test (fractions), batch loss and full loss (cross-entropies)."""
    acc, sd, bn, batch_loss, full_loss = cells
    assert 0 <= acc <= 1 and 0 <= sd <= 0.5 and 0 <= bn <= 1
    assert 0 <= batch_loss < 10 and 0 <= full_loss < 10


# script -> tables: (header words of the printed table, row labels that must appear in it,
#            (first, last) columns, counted from the end of a row, that must parse as numbers,
#            and a check of those numbers)
SCRIPTS = {
    "study_a/plot_a1_matrix_factorization.py": [
        (
            ["run", "original final", "curvlab final", "max rel. dev."],
            A1_RUNS,
            (-3, None),
            _a1_replica,
        ),
        (["run", "F - F* @", "min", "max"], A1_RUNS, (-4, None), _a1_fixed),
    ],
    "study_a/plot_a2_attention.py": [
        (["method", "post-step batch", "full data", "full - floor"], A2_RUNS, (-6, -1), _a2),
    ],
    "study_a/plot_a3_lenet_last_layer.py": [
        (["batch", "method", "test acc", "BN test", "full loss"], A3_RUNS, (-5, None), _a3),
    ],
}


def table_rows(stdout: str, header_words: list[str]) -> list[str]:
    """The lines after the table's header line (the first line holding all header words)."""
    lines = stdout.splitlines()
    for i, line in enumerate(lines):
        if all(w in line for w in header_words):
            return lines[i + 1 :]
    raise AssertionError(f"no table header with {header_words} in the output:\n{stdout}")


def row_for(rows: list[str], label: str) -> str | None:
    """The first row whose label (the text before the first number) is ``label``."""
    for row in rows:
        head = re.split(r"\s+(?=[-+]?\d|nan|inf)", row.strip(), maxsplit=1)[0]
        if re.sub(r"^\d+\s+", "", head).strip() == label:  # A3's rows start with the batch
            return row
    return None


@pytest.mark.parametrize("name", sorted(SCRIPTS), ids=lambda n: Path(n).stem)
def test_script_runs_in_smoke_mode(name, tmp_path):
    script = EXAMPLES / name
    proc = run_smoke(script, tmp_path)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    assert_fits_columns(proc.stdout, name)
    for header, labels, columns, check in SCRIPTS[name]:
        rows = table_rows(proc.stdout, header)
        for label in labels:
            row = row_for(rows, label)
            assert row is not None, f"{name}: no table row for {label!r} in\n{proc.stdout}"
            cells = row.split()[columns[0] : columns[1]]
            assert cells and all(NUMBER.fullmatch(c) for c in cells), row
            values = [float(c) for c in cells]
            assert all(math.isfinite(v) for v in values), row
            check(values)
    assert list(tmp_path.iterdir()) == [], f"{name} wrote files into its working directory"


def test_a1_stale_claim_fails(tmp_path):
    """The agreement with the original's logged curves is asserted by the page: with one
    logged value changed in its embedded excerpt, the smoke run must fail."""
    source = (EXAMPLES / "study_a/plot_a1_matrix_factorization.py").read_text()
    logged = "28056.689453125"  # GD+GD, the loss before step 2
    assert source.count(logged) == 1
    script = tmp_path / "page" / "plot_a1_stale.py"
    script.parent.mkdir()
    script.write_text(source.replace(logged, "28056.789453125"))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    proc = run_smoke(script, run_dir)
    assert proc.returncode != 0 and "AssertionError" in proc.stderr, proc.stdout[-2000:]


@pytest.mark.parametrize("name", sorted(SCRIPTS), ids=lambda n: Path(n).stem)
def test_script_is_a_gallery_page(name):
    """The study page's shape (gallery_utils.assert_gallery_page)."""
    source = assert_gallery_page(name)
    assert "assert " in source  # claims asserted


@pytest.mark.parametrize("folder", ["study_a"])
def test_gallery_folder_has_a_titled_readme(folder):
    assert_titled_readme(folder)
