"""Smoke test of the gallery scripts of study B (examples/study_b).

Each script runs in a subprocess with ``CURVLAB_SMOKE=1`` (a budget of a few seconds) and the
Agg backend, so that a broken example fails ``make test`` and not only ``make docs``. The
checks: the script exits cleanly, prints its table with the expected rows and finite numbers
where the run cannot have failed, and reads as a sphinx-gallery page (a title docstring; a
README.txt with a title for each folder).
"""

from __future__ import annotations

import ast
import math
import re
from pathlib import Path

import pytest
from gallery_utils import EXAMPLES, run_smoke

# script -> (header words of the printed table, row labels that must appear in it,
#            (first, last) columns, counted from the end of a row, that must parse as numbers,
#            and the interval they must lie in)
SCRIPTS = {
    "study_b/plot_b1_rahimi_recht.py": (
        ["optimizer", "train RMSE", "test RMSE"],
        ["SGD", "Adam", "Sophia-style", "SSDH", "SADH", "SSVP"],
        (-3, -1),  # training and test RMSE
        (0.0, math.inf),
    ),
}

NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?|nan|inf", re.IGNORECASE)


def table_rows(stdout: str, header_words: list[str]) -> list[str]:
    """The lines after the table's header line (the first line holding all header words)."""
    lines = stdout.splitlines()
    for i, line in enumerate(lines):
        if all(w in line for w in header_words):
            return lines[i + 1 :]
    raise AssertionError(f"no table header with {header_words} in the output:\n{stdout}")


@pytest.mark.parametrize("name", sorted(SCRIPTS), ids=lambda n: Path(n).stem)
def test_script_runs_in_smoke_mode(name, tmp_path):
    script = EXAMPLES / name
    proc = run_smoke(script, tmp_path)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    header, labels, columns, bounds = SCRIPTS[name]
    rows = table_rows(proc.stdout, header)
    for label in labels:
        matching = [r for r in rows if re.search(rf"(^|\s){re.escape(label)}(\s|$)", r)]
        assert matching, f"{name}: no table row for {label!r} in\n{proc.stdout}"
        if columns is None:
            continue
        for row in matching:
            cells = row.split()[columns[0] : columns[1]]
            assert cells and all(NUMBER.fullmatch(c) for c in cells), row
            values = [float(c) for c in cells]
            assert all(bounds[0] <= v <= bounds[1] for v in values), row
    assert list(tmp_path.iterdir()) == [], f"{name} wrote files into its working directory"


@pytest.mark.parametrize("name", sorted(SCRIPTS), ids=lambda n: Path(n).stem)
def test_script_is_a_gallery_page(name):
    """A title docstring (title line, === underline of the same length), prose cells, no show()."""
    source = (EXAMPLES / name).read_text()
    doc = ast.get_docstring(ast.parse(source), clean=False)
    assert doc, f"{name} has no module docstring"
    lines = doc.strip("\n").splitlines()
    assert len(lines) >= 3 and set(lines[1]) == {"="} and len(lines[1]) >= len(lines[0].rstrip())
    assert "# %%" in source
    assert "plt.show(" not in source
    assert "CURVLAB_FULL" in source and "CURVLAB_SMOKE" in source


@pytest.mark.parametrize("folder", ["study_b"])
def test_gallery_folder_has_a_titled_readme(folder):
    text = (EXAMPLES / folder / "README.txt").read_text().splitlines()
    assert len(text) >= 3 and text[0].strip() and set(text[1].strip()) == {"="}
    assert len(text[1].strip()) >= len(text[0].strip())
