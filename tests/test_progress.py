"""Progress reports (curvlab/_progress.py) through the estimators and the landscapes."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

import curvlab as cl
import curvlab.landscape as ls
from curvlab._progress import progress_bar


def dense(n=60, seed=0):
    g = torch.Generator().manual_seed(seed)
    return cl.DenseOperator(torch.diag(torch.rand(n, generator=g, dtype=torch.float64)))


def test_eigsh_and_spectral_density_report_every_product_to_a_callable():
    A = dense()
    seen = []
    res = cl.eigsh(A, k=1, seed=0, tol=1e-8, progress=lambda d, t, i: seen.append((d, t)))
    assert seen and seen[-1][0] == res.num_matvecs  # every product counted
    assert all(b[0] > a[0] for a, b in zip(seen, seen[1:]))
    seen.clear()
    sd = cl.spectral_density(
        A,
        num_probes=3,
        num_iter=10,
        seed=0,
        progress=lambda d, t, i: seen.append((d, t, i["step"])),
    )
    assert [s[2] for s in seen] == list(range(1, 11)) and seen[-1][0] == sd.num_matvecs
    assert seen[0][1] == 30


def test_reports_off_by_default_and_results_unchanged():
    A = dense()
    a = cl.eigsh(A, k=2, seed=0)
    b = cl.eigsh(A, k=2, seed=0, progress=lambda *_: None)
    assert torch.equal(a.eigenvalues, b.eigenvalues) and a.num_matvecs == b.num_matvecs


def test_a_log_gets_lines_not_carriage_returns(monkeypatch):
    stream = io.StringIO()  # not a terminal
    monkeypatch.setattr("sys.stderr", stream)
    with progress_bar(True, 5, "quick", "points") as p:
        p.update(5)
    assert stream.getvalue() == ""  # short work stays silent in a log
    with progress_bar(True, 5, "work", "points") as p:
        p.every = 0.0  # as if every update came 10 s after the previous one
        for _ in range(5):
            p.update(1)
    out = stream.getvalue()
    assert "\r" not in out and out.count("\n") == 6 and "work: 5/5 points" in out


def test_landscape_progress_callable_and_bad_value():
    torch.manual_seed(0)
    model = nn.Linear(2, 1).double()
    data = [(torch.randn(6, 2, dtype=torch.float64), torch.randn(6, 1, dtype=torch.float64))]
    (d,) = ls.random_directions(model, num=1, seed=0)
    seen = []
    ls.line(model, nn.MSELoss(), data, d, steps=4, progress=lambda a, b, i: seen.append((a, b)))
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    with pytest.raises(TypeError, match="progress must be"):
        ls.line(model, nn.MSELoss(), data, d, steps=4, progress="yes")
