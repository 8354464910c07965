"""Running a gallery script in smoke mode (shared by the gallery tests)."""

from __future__ import annotations

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
