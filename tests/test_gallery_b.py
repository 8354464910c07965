"""Smoke test of the gallery scripts of study B (examples/study_b).

Each script runs in a subprocess with ``CURVLAB_SMOKE=1`` (a budget of a few seconds) and the
Agg backend, so that a broken example fails ``make test`` and not only ``make docs``. The
checks: the script exits cleanly; every printed table has a row for every optimizer and
setting, with numbers that parse and lie in their range (losses positive, accuracies in
[0, 1], perplexities at least 1, hyperparameters inside the study's search box, spreads
bounding their centre); the printed findings name every optimizer; the script reads as a
sphinx-gallery page (a title docstring with the study box; a README.txt with a title).
"""

from __future__ import annotations

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

pytest.importorskip("optuna")  # study B's pages tune with Optuna (the docs extra)

NAMES = ["SGD", "Adam", "Sophia-style", "SSDH", "SADH", "SSVP"]
NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?|nan|inf", re.IGNORECASE)
BOX = {"lr": (5e-4, 0.8), "rho": (1e-4, 0.5), "beta2": (0.985, 0.9999)}


SETTING = r"(tuned here|published|original|curvlab)"


def table(stdout: str, header_words: list[str], labels: int) -> list[tuple[list[str], list[str]]]:
    """The rows after the header line holding all ``header_words``: for each, its first
    ``labels`` label cells (the last one the setting, which may hold a space: "tuned here")
    and the remaining cells. The table ends at the first line that does not parse."""
    lines = stdout.splitlines()
    row_re = re.compile(r"^\s*" + r"(\S+)\s+" * (labels - 1) + SETTING + r"((?:\s+\S+)+)\s*$")
    for i, line in enumerate(lines):
        if all(w in line for w in header_words):
            rows = []
            for row in lines[i + 1 :]:
                m = row_re.match(row)
                if not m:
                    break
                rows.append((list(m.groups()[:labels]), m.group(labels + 1).split()))
            assert rows, f"table {header_words} has no rows:\n{stdout}"
            return rows
    raise AssertionError(f"no table header with {header_words} in the output:\n{stdout}")


def num(cell: str) -> float:
    assert NUMBER.fullmatch(cell), cell
    return float(cell)


def check_settings(rows, settings: set[str], columns=("rho", "beta2")) -> None:
    """Every optimizer and setting present; lr in the box; rho and beta2 in it or '-' (the
    rows: labels (..., optimizer, setting), cells lr, rho[, beta2])."""
    seen = {tuple(labels[-2:]) for labels, _ in rows}
    assert {(n, s) for n in NAMES for s in settings} <= seen, seen
    for labels, cells in rows:
        name = labels[-2]
        assert BOX["lr"][0] <= num(cells[0]) <= BOX["lr"][1], (labels, cells)
        for key, cell in zip(columns, cells[1:]):
            if name in ("SGD", "Adam") and key == "rho" or name == "SGD":
                assert cell == "-", (labels, cells)
            else:
                assert BOX[key][0] <= num(cell) <= BOX[key][1], (labels, cells)


def smoke(name: str, tmp_path: Path) -> str:
    proc = run_smoke(EXAMPLES / name, tmp_path)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    assert list(tmp_path.iterdir()) == [], f"{name} wrote files into its working directory"
    assert_fits_columns(proc.stdout, name)
    findings = proc.stdout.split("\nFindings\n", 1)
    assert len(findings) == 2, f"{name} printed no findings"
    assert all(n in findings[1] for n in NAMES), findings[1]
    return proc.stdout


def test_b1_rahimi_recht(tmp_path):
    out = smoke("study_b/plot_b1_rahimi_recht.py", tmp_path)
    settings = {"tuned here", "published"}
    hp = table(out, ["optimizer", "setting", "lr", "rho", "beta2"], labels=3)
    check_settings(hp, settings)
    # the published settings are the study's (a stale literal table fails here)
    pub = {tuple(lab[:2]): cells for lab, cells in hp if lab[2] == "published"}
    assert pub["30", "Adam"][0] == "0.0269" and pub["14,593", "Sophia-style"][1] == "0.5"
    rows = table(out, ["optimizer", "setting", "train RMSE", "min", "max", "test RMSE"], 3)
    assert {tuple(lab[1:]) for lab, _ in rows} == {(n, s) for n in NAMES for s in settings}
    assert {lab[0] for lab, _ in rows} == {"30", "14,593"}
    for _, cells in rows:
        g, lo, hi, test = (num(c) for c in cells)
        assert 0 < lo <= g * (1 + 1e-3) and g <= hi * (1 + 1e-3), cells  # mean in [min, max]
        assert hi < 2e4 and 0 < test < 2e4, cells  # below about the initial RMSE


@pytest.mark.parametrize(
    "name, metric, bounds",
    [
        ("study_b/plot_b2_resnet18.py", "test acc", (0.0, 1.0)),
        ("study_b/plot_b3_transformer.py", "test ppl", (1.0, 1e3)),
    ],
)
def test_b2_b3_tasks(name, metric, bounds, tmp_path):
    out = smoke(name, tmp_path)
    rows = table(out, ["optimizer", "setting", "train loss", metric], labels=2)
    check_settings(rows, {"published"}, columns=("rho",))
    for _, cells in rows:
        loss, loss_sd, m, m_sd = (num(c) for c in cells[2:])
        assert 0 < loss < 10 and 0 <= loss_sd < loss, cells  # cross-entropy (10 to 32 classes)
        assert bounds[0] <= m <= bounds[1] and 0 <= m_sd <= bounds[1] - bounds[0], cells


SCRIPTS = [
    "study_b/plot_b1_rahimi_recht.py",
    "study_b/plot_b2_resnet18.py",
    "study_b/plot_b3_transformer.py",
]


def test_every_page_is_tested():
    pages = (EXAMPLES / "study_b").glob("plot_*.py")
    assert sorted(str(p.relative_to(EXAMPLES)) for p in pages) == sorted(SCRIPTS)


@pytest.mark.parametrize("name", SCRIPTS, ids=lambda n: Path(n).stem)
def test_script_is_a_gallery_page(name):
    """The study page's shape (gallery_utils.assert_gallery_page)."""
    source = assert_gallery_page(name)
    assert "**Not here:**" in source and "**Data:**" in source


@pytest.mark.parametrize("folder", ["study_b"])
def test_gallery_folder_has_a_titled_readme(folder):
    assert_titled_readme(folder)
