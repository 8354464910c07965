"""Running a gallery script in smoke mode (shared by the gallery tests)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def run_smoke(script: Path, cwd: Path) -> subprocess.CompletedProcess:
    """Run ``script`` with ``CURVLAB_SMOKE=1`` in ``cwd`` (nothing may be written next to the
    examples), one intra-op thread, the Agg backend; returns the finished process."""
    env = dict(os.environ)
    env.update(CURVLAB_SMOKE="1", CURVLAB_FULL="0", MPLBACKEND="Agg", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def table(stdout: str, header_words: list[str]) -> dict[str, list[str]]:
    """Rows (split into cells) of the printed table under the first line holding every
    header word, keyed by their first cell; the header must be followed by a ``---`` rule
    and the table ends at a blank line."""
    lines = stdout.splitlines()
    for i, line in enumerate(lines):
        if all(w in line for w in header_words):
            body = lines[i + 1 :]
            assert body and set(body[0].strip()) == {"-"}, f"no rule under the header:\n{stdout}"
            rows = {}
            for row in body[1:]:
                cells = row.split()
                if not cells:
                    break
                rows[cells[0]] = cells
            return rows
    raise AssertionError(f"no table header with {header_words} in the output:\n{stdout}")


def assert_fits_columns(stdout: str, name: str, width: int = 80) -> None:
    """Every printed line of ``name`` fits the content column (``width`` characters)."""
    wide = [line for line in stdout.splitlines() if len(line) > width]
    assert not wide, f"{name}: printed lines wider than {width} columns: {wide}"


def assert_gallery_page(name: str) -> str:
    """What every study page is: a title docstring (title, ``===`` underline at least as long)
    with the study box (an admonition), at least four prose cells, the quick, full and
    original modes behind a hidden ``sphinx_gallery_start_ignore`` block, findings printed
    from the results, no ``plt.show()``. Returns the source for further checks."""
    source = (EXAMPLES / name).read_text()
    doc = ast.get_docstring(ast.parse(source), clean=False)
    assert doc, f"{name} has no module docstring"
    lines = doc.strip("\n").splitlines()
    assert len(lines) >= 3 and set(lines[1]) == {"="} and len(lines[1]) >= len(lines[0].rstrip())
    assert ".. admonition::" in doc, f"{name}: no study box"
    assert source.count("# %%") >= 4, f"{name}: fewer than four prose cells"
    assert "plt.show(" not in source
    for mode in ("CURVLAB_FULL", "CURVLAB_SMOKE", "CURVLAB_ORIGINAL"):
        assert mode in source, f"{name}: no {mode} mode"
    assert "# sphinx_gallery_start_ignore" in source and "# sphinx_gallery_end_ignore" in source
    assert "Findings" in source, f"{name}: no printed findings"
    assert "RESULTS_PROSE" not in source
    return source


def assert_titled_readme(folder: str) -> None:
    """The gallery folder's README.txt starts with a title and its ``===`` underline."""
    text = (EXAMPLES / folder / "README.txt").read_text().splitlines()
    assert len(text) >= 3 and text[0].strip() and set(text[1].strip()) == {"="}
    assert len(text[1].strip()) >= len(text[0].strip())


def check_smoke_tables(name: str, cwd: Path, tables) -> str:
    """Run ``name`` in smoke mode in ``cwd`` and check its printed tables; returns stdout.

    ``tables`` lists ``(header words, row labels, check)``: each table must hold exactly
    those rows, and ``check(cells)`` must accept each (it raises on a bad row). The run must
    exit cleanly, print nothing wider than the content column and write nothing into
    ``cwd``."""
    proc = run_smoke(EXAMPLES / name, cwd)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    for header, labels, check in tables:
        rows = table(proc.stdout, header)
        assert sorted(rows) == sorted(labels), f"{name}: rows {sorted(rows)}, expected {labels}"
        for label in labels:
            try:
                check(rows[label])
            except (AssertionError, ValueError, IndexError) as err:
                raise AssertionError(f"{name}: bad row {' '.join(rows[label])!r}") from err
    assert_fits_columns(proc.stdout, name)
    assert list(cwd.iterdir()) == [], f"{name} wrote files into its working directory"
    return proc.stdout
