"""Tests for curvlab.fourier: uniform DFT metrics, NUDFT, projection and filtering methods,
radial power spectrum, SpectralBiasTracker."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import curvlab.fourier as fr

SETTINGS = settings(max_examples=25, deadline=None)


def grid(n, dtype=torch.float64):
    return torch.arange(n, dtype=dtype) / n


@st.composite
def sinusoid_sums(draw):
    n = draw(st.integers(8, 300))
    kmax = (n - 1) // 2
    freqs = draw(st.lists(st.integers(1, kmax), min_size=1, max_size=6, unique=True))
    amps = draw(st.lists(st.floats(0.1, 5.0), min_size=len(freqs), max_size=len(freqs)))
    phases = draw(st.lists(st.floats(0.0, 2 * math.pi), min_size=len(freqs), max_size=len(freqs)))
    return n, freqs, amps, phases


def make_signal(n, freqs, amps, phases):
    x = grid(n)
    y = torch.zeros(n, dtype=torch.float64)
    for k, a, p in zip(freqs, amps, phases):
        y += a * torch.sin(2 * math.pi * k * x + p)
    return y


# -- uniform grids ------------------------------------------------------------------------
@SETTINGS
@given(sinusoid_sums())
def test_sum_of_sinusoids_gives_its_amplitudes(case):
    n, freqs, amps, phases = case
    y = make_signal(n, freqs, amps, phases)
    absent = [k for k in range(1, (n - 1) // 2 + 1) if k not in freqs][:3]
    out = fr.dft_amplitudes(y, freqs + absent)
    expected = torch.tensor(amps + [0.0] * len(absent), dtype=torch.float64)
    torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-9)
    # negative frequencies of a real signal carry the same amplitude
    torch.testing.assert_close(
        fr.dft_amplitudes(y, [-k for k in freqs]), expected[: len(freqs)], rtol=1e-9, atol=1e-9
    )


def test_constant_and_nyquist_amplitudes():
    n = 20
    x = grid(n)
    y = 1.5 + 0.75 * torch.cos(math.pi * n * x) + 2.0 * torch.sin(2 * math.pi * 3 * x)
    torch.testing.assert_close(
        fr.dft_amplitudes(y, [0, 10, 3]), torch.tensor([1.5, 0.75, 2.0], dtype=torch.float64)
    )


def test_amplitudes_batched_and_float32():
    x = grid(64, torch.float32)
    ys = torch.stack([a * torch.sin(2 * math.pi * 5 * x) for a in (1.0, 2.0, 3.0)])
    out = fr.dft_amplitudes(ys, [5])
    assert out.shape == (3, 1) and out.dtype == torch.float32
    torch.testing.assert_close(out[:, 0], torch.tensor([1.0, 2.0, 3.0]), rtol=1e-5, atol=1e-5)


@SETTINGS
@given(sinusoid_sums(), st.floats(-math.pi, math.pi), st.floats(0.2, 3.0))
def test_relative_error_closed_forms(case, shift, scale):
    n, freqs, amps, phases = case
    y = make_signal(n, freqs, amps, phases)
    torch.testing.assert_close(
        fr.relative_error(y, y, freqs), torch.zeros(len(freqs)).double(), rtol=0, atol=1e-12
    )
    torch.testing.assert_close(
        fr.relative_error(torch.zeros_like(y), y, freqs), torch.ones(len(freqs)).double()
    )
    # the first component rescaled and phase-shifted: |s e^{i shift} - 1| (complex difference)
    k0 = freqs[0]
    x = grid(n)
    h = (
        y
        - amps[0] * torch.sin(2 * math.pi * k0 * x + phases[0])
        + scale * amps[0] * torch.sin(2 * math.pi * k0 * x + phases[0] + shift)
    )
    err = fr.relative_error(h, y, freqs)
    expected = abs(scale * complex(math.cos(shift), math.sin(shift)) - 1)
    assert err[0].item() == pytest.approx(expected, rel=1e-7, abs=1e-9)
    torch.testing.assert_close(err[1:], torch.zeros(len(freqs) - 1).double(), rtol=0, atol=1e-9)


def test_relative_error_broadcasts_over_predictions():
    n = 50
    y = make_signal(n, [2, 5], [1.0, 0.5], [0.0, 1.0])
    preds = torch.stack([y, 0 * y, 2 * y])
    err = fr.relative_error(preds, y, [2, 5])
    torch.testing.assert_close(
        err, torch.tensor([[0.0, 0.0], [1.0, 1.0], [1.0, 1.0]]).double(), rtol=1e-9, atol=1e-9
    )


def test_uniform_errors():
    y = make_signal(32, [3], [1.0], [0.0])
    with pytest.raises(ValueError, match="no energy"):
        fr.relative_error(y, y, [3, 4])
    with pytest.raises(ValueError, match="Nyquist"):
        fr.dft_amplitudes(y, [17])
    with pytest.raises(ValueError, match="integers"):
        fr.dft_amplitudes(y, [2.5])
    with pytest.raises(ValueError, match="last axis"):
        fr.relative_error(y[:10], y, [3])
    with pytest.raises(ValueError, match="non-empty"):
        fr.dft_amplitudes(y, [])


# -- NUDFT --------------------------------------------------------------------------------
@SETTINGS
@given(
    n=st.integers(1, 200),
    seed=st.integers(0, 10_000),
    chunk=st.integers(1, 64),
    cols=st.sampled_from([None, 1, 3]),
)
def test_nudft_on_uniform_grid_equals_fft(n, seed, chunk, cols):
    g = torch.Generator().manual_seed(seed)
    shape = (n,) if cols is None else (n, cols)
    y = torch.randn(shape, generator=g, dtype=torch.float64)
    out = fr.nudft(grid(n), y, torch.arange(n), chunk_size=chunk)
    ref = torch.fft.fft(y, dim=0)
    torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-9)
    # Parseval: sum |y|^2 = (1/N) sum_k |Y(k)|^2
    assert (out.abs() ** 2).sum().item() / n == pytest.approx((y**2).sum().item(), rel=1e-10)
    # ortho normalization is unitary
    o = fr.nudft(grid(n), y, torch.arange(n), norm="ortho")
    assert (o.abs() ** 2).sum().item() == pytest.approx((y**2).sum().item(), rel=1e-10)
    f = fr.nudft(grid(n), y, torch.arange(n), norm="forward")
    torch.testing.assert_close(f, ref / n, rtol=1e-9, atol=1e-12)


@SETTINGS
@given(n=st.integers(1, 100), k=st.integers(1, 12), seed=st.integers(0, 10_000))
def test_nudft_nonuniform_matches_numpy_direct_sum(n, k, seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-3, 3, n)
    y = rng.normal(size=n) + 1j * rng.normal(size=n)
    freqs = rng.uniform(-5, 5, k)
    ref = np.exp(-2j * np.pi * np.outer(freqs, x)) @ y
    out = fr.nudft(torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(freqs), chunk_size=7)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-9, atol=1e-9)


def test_nudft_float32_and_errors():
    x = grid(16, torch.float32)
    y = torch.randn(16, generator=torch.Generator().manual_seed(0))
    out = fr.nudft(x, y, torch.arange(16))
    assert out.dtype == torch.complex64
    torch.testing.assert_close(out, torch.fft.fft(y), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="one position per sample"):
        fr.nudft(torch.zeros(16, 2), y, [1])
    with pytest.raises(ValueError, match="one value per position"):
        fr.nudft(x, y[:5], [1])
    with pytest.raises(ValueError, match="norm"):
        fr.nudft(x, y, [1], norm="unitary")
    with pytest.raises(ValueError, match="chunk_size"):
        fr.nudft(x, y, [1], chunk_size=0)


# -- projection method --------------------------------------------------------------------
def test_projection_error_matches_direct_computation():
    rng = np.random.default_rng(0)
    n, d = 400, 6
    # inputs elongated along a known axis, so that it is the first principal component
    X = rng.normal(size=(n, d)) * np.array([5.0, 1, 1, 1, 1, 1])
    y = np.stack([np.sin(X[:, 0]), np.cos(0.5 * X[:, 0])], axis=1)
    h = y + 0.1 * rng.normal(size=y.shape)
    freqs = np.array([0.05, 0.1, -0.2])
    res = fr.projection_error(torch.from_numpy(X), torch.from_numpy(y), torch.from_numpy(h), freqs)
    p = res.direction.numpy()
    assert abs(p[0]) == pytest.approx(1.0, abs=1e-2) and p[np.abs(p).argmax()] > 0
    # independent reference: numpy PCA, projection, direct sums
    Xc = X - X.mean(0)
    w, V = np.linalg.eigh(Xc.T @ Xc)
    p_ref = V[:, -1] * np.sign(V[np.abs(V[:, -1]).argmax(), -1])
    np.testing.assert_allclose(p, p_ref, atol=1e-10)
    t = Xc @ p_ref
    E = np.exp(-2j * np.pi * np.outer(freqs, t)) / n
    Y, H = E @ y, E @ h
    np.testing.assert_allclose(res.target_coefficients.numpy(), Y, atol=1e-12)
    np.testing.assert_allclose(res.pred_coefficients.numpy(), H, atol=1e-12)
    ref = np.linalg.norm(H - Y, axis=1) / np.linalg.norm(Y, axis=1)
    np.testing.assert_allclose(res.error.numpy(), ref, rtol=1e-10)
    # labels: each error belongs to the frequency given at the same position
    np.testing.assert_allclose(res.freqs.numpy(), freqs)
    for i, f in enumerate(freqs):
        single = fr.projection_error(
            torch.from_numpy(X), torch.from_numpy(y), torch.from_numpy(h), [f]
        )
        assert single.error[0].item() == pytest.approx(res.error[i].item(), rel=1e-10)


def test_projection_error_self_zero_and_zero_prediction_one():
    g = torch.Generator().manual_seed(1)
    X = torch.randn(300, 4, 2, generator=g, dtype=torch.float64)
    y = torch.sin(X.sum(dim=(1, 2)))
    freqs = [0.1, 0.3]
    direction = torch.ones(8, dtype=torch.float64)
    res = fr.projection_error(X, y, y, freqs, direction=direction)
    torch.testing.assert_close(res.error, torch.zeros(2).double(), rtol=0, atol=0)
    assert res.target_coefficients.shape == (2,)
    torch.testing.assert_close(res.direction, direction / direction.norm())
    zero = fr.projection_error(X, y, torch.zeros_like(y), freqs, direction=direction)
    torch.testing.assert_close(zero.error, torch.ones(2).double())
    with pytest.raises(ValueError, match="features"):
        fr.projection_error(X, y, y, freqs, direction=torch.ones(3))
    with pytest.raises(ValueError, match="same shape"):
        fr.projection_error(X, y, y[:, None].repeat(1, 2), freqs)
    with pytest.raises(ValueError, match="one row per sample"):
        fr.projection_error(X, y[:10], y[:10], freqs)


# -- filtering method ---------------------------------------------------------------------
def dense_filtered(X, y, h, delta):
    """Reference: the whole kernel matrix, in float64 numpy."""
    X = X.reshape(X.shape[0], -1)
    d2 = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)
    K = np.exp(-(d2 - d2.min(1, keepdims=True)) / (2 * delta))
    K /= K.sum(1, keepdims=True)
    y, h = y.reshape(len(y), -1), h.reshape(len(h), -1)
    yl, hl = K @ y, K @ h
    yh, hh = y - yl, h - hl
    return (
        np.linalg.norm(yl - hl) / np.linalg.norm(yl),
        np.linalg.norm(yh - hh) / np.linalg.norm(yh),
    )


def filt_problem(seed, n=60, d=3, c=1):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = np.sin(2 * X[:, :1] + np.arange(c)) + 0.3
    h = y + 0.2 * rng.normal(size=y.shape)
    return X, y, h


@SETTINGS
@given(
    seed=st.integers(0, 10_000),
    delta=st.floats(0.05, 20.0),
    block=st.integers(1, 70),
    c=st.integers(1, 3),
)
def test_filtered_error_matches_dense_kernel_and_blocks_agree(seed, delta, block, c):
    X, y, h = filt_problem(seed, c=c)
    Xt, yt, ht = (torch.from_numpy(a) for a in (X, y, h))
    lo, hi = fr.filtered_error(Xt, yt, ht, delta, block_size=block)
    one_shot = fr.filtered_error(Xt, yt, ht, delta, block_size=len(X))
    ref = dense_filtered(X, y, h, delta)
    assert lo == pytest.approx(ref[0], rel=1e-9)
    assert hi == pytest.approx(ref[1], rel=1e-9)
    assert (lo, hi) == pytest.approx(one_shot, rel=1e-12)


def test_filtered_error_perfect_prediction_is_zero():
    X, y, _ = filt_problem(0)
    for delta in (1e-6, 0.3, 1e6):
        assert fr.filtered_error(
            torch.from_numpy(X), torch.from_numpy(y), torch.from_numpy(y), delta
        ) == (0.0, 0.0)


def test_filtered_error_limits():
    X, y, h = filt_problem(3, c=2)
    Xt, yt, ht = (torch.from_numpy(a) for a in (X, y, h))
    # delta -> 0: the kernel is the identity, everything is low frequency
    d2 = ((X[:, None] - X[None]) ** 2).sum(-1)
    dmin2 = d2[~np.eye(len(X), dtype=bool)].min()
    lo, hi = fr.filtered_error(Xt, yt, ht, dmin2 / 30)  # weights off the diagonal <= e^-15
    assert math.isfinite(hi)
    assert lo == pytest.approx(np.linalg.norm(y - h) / np.linalg.norm(y), rel=1e-5)
    # at a delta where the kernel is exactly the identity, the high band is empty: undefined
    with pytest.warns(UserWarning, match="no high-frequency part"):
        lo0, hi0 = fr.filtered_error(Xt, yt, ht, 1e-9)
    assert math.isnan(hi0)
    assert lo0 == pytest.approx(np.linalg.norm(y - h) / np.linalg.norm(y), rel=1e-12)
    # delta -> infinity: the kernel averages everything, the low part is the mean
    ym, hm = y.mean(0), h.mean(0)
    lo_ref = np.linalg.norm(ym - hm) / np.linalg.norm(ym)
    hi_ref = np.linalg.norm((y - ym) - (h - hm)) / np.linalg.norm(y - ym)
    for delta in (1e8, math.inf):
        lo, hi = fr.filtered_error(Xt, yt, ht, delta)
        assert lo == pytest.approx(lo_ref, rel=1e-6)
        assert hi == pytest.approx(hi_ref, rel=1e-6)


def test_filtered_error_float32_and_errors():
    X, y, h = filt_problem(4)
    Xt, yt, ht = (torch.from_numpy(a).float() for a in (X, y, h))
    lo, hi = fr.filtered_error(Xt, yt, ht, 1.0, block_size=8)
    ref = dense_filtered(X, y, h, 1.0)
    assert (lo, hi) == pytest.approx(ref, rel=1e-4)
    with pytest.raises(ValueError, match="positive"):
        fr.filtered_error(Xt, yt, ht, 0.0)
    with pytest.raises(ValueError, match="delta must be a number"):
        fr.filtered_error(Xt, yt, ht, float("nan"))
    with pytest.raises(TypeError, match="delta must be a real number, got str"):
        fr.filtered_error(Xt, yt, ht, "1.0")
    assert fr.filtered_error(Xt, yt, ht, torch.tensor(1.0)) == (lo, hi)
    with pytest.raises(ValueError, match="block_size"):
        fr.filtered_error(Xt, yt, ht, 1.0, block_size=0)
    with pytest.raises(ValueError, match="same shape"):
        fr.filtered_error(Xt, yt, ht[:, 0].reshape(-1, 1).repeat(1, 2), 1.0)


# -- radial power spectrum ----------------------------------------------------------------
@SETTINGS
@given(h=st.integers(1, 24), w=st.integers(1, 24), seed=st.integers(0, 10_000))
def test_radial_spectrum_parseval(h, w, seed):
    g = torch.Generator().manual_seed(seed)
    imgs = torch.randn(2, 3, h, w, generator=g, dtype=torch.float64)
    res = fr.radial_power_spectrum(imgs)
    assert res.power.shape == (2, 3, res.freqs.numel())
    assert int(res.counts.sum()) == h * w
    energy = (res.power * res.counts.double()).sum(-1)
    torch.testing.assert_close(energy, (imgs**2).sum(dim=(-2, -1)))


def test_radial_spectrum_plane_wave_and_unpacking():
    n = 32
    i = torch.arange(n, dtype=torch.float64)
    img = torch.cos(2 * math.pi * (3 * i[:, None] + 4 * i[None, :]) / n)
    freqs, power = fr.radial_power_spectrum(img)
    assert int(freqs[power.argmax()]) == 5
    nonzero = torch.nonzero(power > 1e-9).reshape(-1).tolist()
    assert nonzero == [5]
    const = fr.radial_power_spectrum(torch.ones(8, 8))
    assert torch.nonzero(const.power > 1e-9).reshape(-1).tolist() == [0]
    with pytest.raises(ValueError, match="H, W"):
        fr.radial_power_spectrum(torch.ones(5))


# -- tracker ------------------------------------------------------------------------------
class Fixed(nn.Module):
    """A 'model' that returns a given function of x (for exact expectations)."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn
        self.dummy = nn.Parameter(torch.zeros(1, dtype=torch.float64))

    def forward(self, x):
        return self.fn(x)[:, None]


def test_tracker_records_every_steps_with_normalized_amplitudes():
    n = 100
    x = grid(n)[:, None]
    freqs = [2, 5, 9]
    amps = [1.0, 0.5, 0.25]
    y = make_signal(n, freqs, amps, [0.3, 1.0, 2.0])
    tracker = fr.SpectralBiasTracker(x, y, freqs, every=3)
    recorded = []
    for step in range(10):
        scale = step / 10
        recorded.append(
            tracker.update(
                Fixed(lambda t, s=scale: s * make_signal(n, freqs, amps, [0.3, 1.0, 2.0]))
            )
        )
    res = tracker.result()
    assert recorded == [s % 3 == 0 for s in range(10)]
    assert res.steps.tolist() == [0, 3, 6, 9]
    assert res.values.shape == (4, 3)
    expected = torch.tensor([[s / 10] * 3 for s in (0, 3, 6, 9)], dtype=torch.float64)
    torch.testing.assert_close(res.values, expected, rtol=1e-9, atol=1e-9)
    assert res.metric == "amplitude" and res.every == 3
    # mse of s * y against y is (1 - s)^2 mean(y^2)
    torch.testing.assert_close(
        res.mse,
        torch.tensor([(1 - s / 10) ** 2 for s in (0, 3, 6, 9)], dtype=torch.float64)
        * (y**2).mean(),
    )
    step, vals = res.first_below(0.2 * (y**2).mean().item())
    assert step == 6
    torch.testing.assert_close(vals, torch.full((3,), 0.6, dtype=torch.float64))
    with pytest.raises(ValueError, match="never went below"):
        res.first_below(-1.0)


def test_tracker_amplitudes_argument_and_other_metrics():
    n = 64
    x = grid(n)
    y = make_signal(n, [1, 4], [2.0, 1.0], [0.0, 0.0])
    t = fr.SpectralBiasTracker(x, y, [1, 4], amplitudes=[4.0, 1.0])
    t.record(y)
    torch.testing.assert_close(t.result().values[0], torch.tensor([0.5, 1.0]).double())

    rel = fr.SpectralBiasTracker(x, y, [1, 4], metric="relative_error", every=1)
    rel.update(y)
    rel.update(torch.zeros(n, 1, dtype=torch.float64))  # reshaped to the target
    torch.testing.assert_close(
        rel.result().values, torch.tensor([[0.0, 0.0], [1.0, 1.0]]).double(), rtol=0, atol=1e-12
    )
    assert rel.result().metric == "relative_error"

    X = torch.randn(200, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    yy = torch.sin(X[:, 0])
    proj = fr.SpectralBiasTracker(X, yy, [0.1, 0.2], metric="projection")
    proj.record(yy * 0.5, step=7)
    r = proj.result()
    ref = fr.projection_error(X, yy, yy * 0.5, [0.1, 0.2]).error
    torch.testing.assert_close(r.values[0], ref)
    assert r.steps.tolist() == [7]

    def my_metric(pred, target):
        return torch.stack([pred.mean(), target.mean()])

    cust = fr.SpectralBiasTracker(x, y, [0, 1], metric=my_metric)
    cust.record(y + 1)
    assert cust.result().metric == "my_metric"
    torch.testing.assert_close(cust.result().values[0], torch.stack([(y + 1).mean(), y.mean()]))
    cust.reset()
    assert cust.result().values.shape == (0, 2)


def test_tracker_errors():
    x = grid(32)
    y = make_signal(32, [2], [1.0], [0.0])
    with pytest.raises(ValueError, match="every"):
        fr.SpectralBiasTracker(x, y, [2], every=0)
    with pytest.raises(ValueError, match="metric"):
        fr.SpectralBiasTracker(x, y, [2], metric="fourier")
    with pytest.raises(ValueError, match="amplitude is zero"):
        fr.SpectralBiasTracker(x, y, [2, 3])
    with pytest.raises(ValueError, match="entries"):
        fr.SpectralBiasTracker(x, y, [2], amplitudes=[1.0, 2.0])
    with pytest.raises(ValueError, match="1-D target"):
        fr.SpectralBiasTracker(x, torch.zeros(32, 2), [2])
    t = fr.SpectralBiasTracker(x, y, [2], metric=lambda p, t: torch.zeros(3))
    with pytest.raises(ValueError, match="returned 3 values"):
        t.record(y)


@pytest.mark.slow
def test_filtered_error_ten_thousand_samples_in_bounded_memory():
    # a one-shot kernel would need 10^8 float64 entries (763 MiB) per temporary
    import os
    import subprocess
    import sys

    code = (
        "import resource, torch\n"
        "import curvlab.fourier as fr\n"
        "g = torch.Generator().manual_seed(0)\n"
        "X = torch.rand(10000, 8, generator=g, dtype=torch.float64)\n"
        "y = torch.sin(3 * X[:, 0]); h = y + 0.1 * torch.randn(10000, generator=g, "
        "dtype=torch.float64)\n"
        "r0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "lo, hi = fr.filtered_error(X, y, h, 0.1)\n"
        "r1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print((r1 - r0) / 1024, lo, hi)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    mib, lo, hi = (float(v) for v in out.stdout.split())
    assert mib < 150, f"peak memory grew by {mib:.0f} MiB"
    assert 0 < lo < 1 and 0 < hi < 2


def test_result_reprs_are_compact():
    import math

    from curvlab.fourier import SpectralBiasTracker, projection_error, radial_power_spectrum

    x = torch.arange(256).unsqueeze(1) / 256
    y = torch.sin(2 * math.pi * 2 * x[:, 0]) + torch.sin(2 * math.pi * 5 * x[:, 0])
    tracker = SpectralBiasTracker(x, y, [2, 5], every=1)
    for _ in range(50):
        tracker.update(y * 0.5)
    r = repr(tracker.result())
    assert "50 records" in r and "tensor(" not in r and len(r) < 200
    p = repr(projection_error(x, y, 0.5 * y, [2, 5]))
    assert p.startswith("ProjectionError({2: 0.5") and "tensor(" not in p
    s = repr(radial_power_spectrum(torch.zeros(3, 64, 64)))
    assert "tensor(" not in s and len(s) < 100
