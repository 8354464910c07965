"""Result reprs are short and carry the numbers a user looks for (issue 19: no tensor dumps).

Every frozen result dataclass a public function of linalg, landscape, fourier and track returns
is built at a realistic size (a 10 x 100 node matrix, a 1000-entry diagonal, a 41-point line,
a 21 x 21 surface, 50 frequencies) and its repr must fit one line of < 200 characters with the
summary numbers in 3-4 significant digits (no 16-digit floats).
"""

import math
import re

import pytest
import torch
from torch import nn

import curvlab as cl
from curvlab.fourier import SpectralBiasTracker, projection_error, radial_power_spectrum
from curvlab.landscape import line, surface
from curvlab.track import CurvatureTracker


def compact(obj, *must_contain):
    text = repr(obj)
    assert "\n" not in text and len(text) < 200, text
    assert "tensor(" not in text, text
    assert not re.search(r"\d\.\d{7,}", text), f"more than 7 digits: {text}"
    for piece in must_contain:
        assert piece in text, f"{piece!r} not in {text}"
    return text


@pytest.fixture(scope="module")
def op():
    eigs = torch.linspace(0.0, 1.0, 1000, dtype=torch.float64)
    eigs[-1], eigs[-2] = 10.0, 5.0
    return cl.DenseOperator(torch.diag(eigs))


def test_linalg_reprs(op):
    n = op.shape[0]
    true_trace = float(torch.diagonal(op.matrix).sum())
    t = cl.trace(op, num_matvecs=60, seed=0)
    assert abs(t.estimate - true_trace) < 5 * t.std_error + 1e-6
    compact(t, f"estimate={t.estimate:.4g}", f"std_error={t.std_error:.3g}", "hutch++")
    d = cl.diagonal(op, num_matvecs=10, seed=0)
    compact(d, f"n={n}", "[0, 10]", "hutchinson")  # exact for a diagonal matrix
    sd = cl.spectral_density(op, seed=0)
    assert tuple(sd.nodes.shape) == (10, 100)
    compact(sd, "num_probes=10", "nodes per probe=100", f"dim={n}", "seed=0")
    g = cl.spectral_gap(op, seed=0)
    compact(g, "lambda1=10,", "lambda2=5,", "ratio=2,")
    e = cl.eigsh(op, k=2, seed=0)
    compact(e, "eigenvalues=[5, 10]")
    lz = cl.lanczos(op, 20, seed=0)
    compact(lz, "num_iter=20", f"basis={n}x20")
    b = torch.ones(n, dtype=torch.float64)
    c = cl.cg(cl.DenseOperator(torch.eye(n, dtype=torch.float64) * 2), b)
    compact(c, f"x=[{n}]", "converged=True", "num_iter=1")
    stopped = cl.trace(op, num_matvecs=60, seed=0, callback=lambda it: True)
    compact(stopped, "stopped=True")


def test_landscape_reprs():
    torch.manual_seed(0)
    model = nn.Linear(3, 1).double()
    X = torch.randn(16, 3, dtype=torch.float64)
    data = [(X, model(X).detach())]  # the model is at the minimum: loss 0 at a = 0
    d = [torch.randn_like(p) for p in model.parameters()]
    res = line(model, nn.MSELoss(), data, d, steps=41, progress=False)
    compact(res, "41 points on [-1, 1]", "min loss", "num_data=16")
    s = surface(
        model, nn.MSELoss(), data, [d, [torch.randn_like(p) for p in d]], steps=21, progress=False
    )
    compact(s, "21 x 21 grid", "loss in [", "num_data=16")
    stop = line(
        model,
        nn.MSELoss(),
        data,
        d,
        steps=41,
        progress=False,
        callback=lambda it: it.iteration >= 5,
    )
    assert stop.stopped and torch.isnan(stop.loss[5:]).all()
    torch.testing.assert_close(stop.loss[:5], res.loss[:5])
    compact(stop, "stopped=True")


def test_fourier_reprs():
    t = torch.arange(256, dtype=torch.float64) / 256
    X = t[:, None] * torch.tensor([0.6, 0.8], dtype=torch.float64)
    y = sum(torch.sin(2 * math.pi * k * t) for k in range(1, 51))
    pe = projection_error(X, y, 0.5 * y, list(range(1, 51)))
    compact(pe, "2: 0.5", "(50 frequencies)", "N=256")
    rs = radial_power_spectrum(torch.randn(3, 32, 32))
    compact(rs, "radial frequencies")
    tr = SpectralBiasTracker(t[:, None], y, list(range(1, 51)), every=1)
    for _ in range(3):
        tr.record(0.5 * y)
    compact(tr.result(), "3 records", "50 frequencies")


def test_track_reprs():
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(32, 3, generator=g), torch.randn(32, 1, generator=g)
    model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
    seen = []
    tracker = CurvatureTracker(
        model,
        nn.MSELoss(),
        (X, y),
        k=2,
        trace=True,
        seed=0,
        progress=lambda done, total, info: seen.append(done),
    )
    rec = tracker.record()
    assert seen, "progress= reaches the record's solves"
    compact(rec, f"eigenvalues=[{rec.eigenvalues[0]:.6g}, {rec.eigenvalues[1]:.6g}]", "trace=")
    compact(tracker, "records=1")
    with pytest.raises(TypeError, match="progress must be"):
        CurvatureTracker(model, nn.MSELoss(), (X, y), progress="bar")
