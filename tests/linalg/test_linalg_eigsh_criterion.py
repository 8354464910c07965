"""eigsh's stopping rules (criterion=), the gradient start (v0="gradient") and callback=.

Truth: dense ``torch.linalg.eigvalsh`` in float64 of the same matrices, and for the model
operators a dense Hessian by plain autograd (tests/reference.py).
"""

from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from linalg_helpers import make_spectrum, with_spectrum
from torch import nn

import curvlab as cl
from curvlab import ConvergenceWarning, eigsh


def top(op, k):
    return torch.linalg.eigvalsh(op.matrix.double())[-k:]


@settings(max_examples=25, deadline=None)
@given(
    kind=st.sampled_from(["clustered", "repeated", "negative", "outlier_bulk", "mixed"]),
    n=st.integers(10, 150),
    k=st.integers(1, 6),
    tol=st.sampled_from([1e-4, 1e-6, 1e-9]),
    seed=st.integers(0, 10_000),
)
def test_a_converged_eigenvalue_run_meets_tol_against_eigvalsh(kind, n, k, tol, seed):
    """The default rule certifies relative eigenvalue accuracy: a converged run is within
    tol of the true top-k (float64), whatever the spectrum's shape (clusters included: the
    fresh-block check guards the gap estimate)."""
    op = with_spectrum(make_spectrum(kind, n, seed), seed=seed)
    k = min(k, n - 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        # seed + 1: the start must not be the first column of the matrix's own random basis
        res = eigsh(op, k=k, tol=tol, seed=seed + 1)
    assert res.criterion == "eigenvalue" and res.eigenvalue_errors.shape == (k,)
    ref = top(op, k)
    scale = float(ref.abs().max())
    err = (res.eigenvalues - ref).abs()
    if res.converged:
        assert bool((res.eigenvalue_errors <= tol * res.eigenvalues.abs() + 1e-14 * scale).all())
        # the claim holds against the truth (10x: the estimate is first order in the gap)
        assert bool((err <= 10 * tol * ref.abs() + 1e-12 * scale).all()), (kind, err, ref)


def test_residual_rule_is_available_and_stricter():
    op = with_spectrum(make_spectrum("outlier_bulk", 200, 3), seed=3)
    a = eigsh(op, k=3, tol=1e-6, seed=0)
    b = eigsh(op, k=3, tol=1e-6, seed=0, criterion="residual")
    assert a.converged and b.converged and b.criterion == "residual"
    assert bool((b.residuals <= 1e-6 * b.eigenvalues.abs()).all())
    assert a.num_matvecs <= b.num_matvecs
    ref = top(op, 3)
    assert torch.allclose(a.eigenvalues, ref, rtol=1e-5, atol=0)
    with pytest.raises(ValueError, match="criterion must be one of"):
        eigsh(op, k=1, criterion="ritz")


def test_eigenvalue_errors_estimate_the_true_errors():
    """``eigenvalue_errors`` is residual^2/gap where trusted: it bounds the true error to a
    small factor and is far below the residual itself."""
    eigs = torch.cat([torch.tensor([10.0, 6.0]), torch.linspace(0.0, 1.0, 300)])
    op = with_spectrum(eigs, seed=1)
    res = eigsh(op, k=1, tol=1e-7, seed=2, criterion="residual")
    err = float((res.eigenvalues - 10.0).abs())
    est = float(res.eigenvalue_errors[0])
    assert est < float(res.residuals[0])  # the gap was trusted
    assert err <= 2 * est + 1e-13


def _mlp_operator(batches=3, seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    X = torch.randn(30, 6, dtype=torch.float64)
    y = torch.randint(0, 3, (30,))
    data = [(X[i : i + 10], y[i : i + 10]) for i in range(0, 30, 10)][:batches]
    return model, data


class CountingData:
    """A re-iterable list of batches that counts the passes over it."""

    def __init__(self, batches):
        self.batches, self.passes = batches, 0

    def __iter__(self):
        self.passes += 1
        return iter(self.batches)

    def __len__(self):
        return len(self.batches)


def test_gradient_start_matches_dense_and_costs_no_pass_with_kept_graphs():
    from reference import dense_hessian

    model, batches = _mlp_operator()
    data = CountingData(batches)
    H = cl.HessianOperator(model, nn.CrossEntropyLoss(), data)
    _, g = H.loss_and_gradient()
    passes = data.passes
    torch.testing.assert_close(H.gradient(), g)
    assert data.passes == passes + 1  # the gradient pass keeps the graphs ...
    H @ torch.randn(H.shape[0], dtype=torch.float64)
    assert data.passes == passes + 1  # ... so the first product needs no data pass
    res = eigsh(H, k=2, v0="gradient", seed=0, tol=1e-10)
    ref = torch.linalg.eigvalsh(dense_hessian(model, nn.CrossEntropyLoss(), batches))[-2:]
    torch.testing.assert_close(res.eigenvalues, ref, rtol=1e-8, atol=1e-10)
    # seeded: the same start twice
    again = eigsh(H, k=2, v0="gradient", seed=0, tol=1e-10)
    assert again.num_matvecs == res.num_matvecs


def test_gradient_start_on_other_operators():
    model, batches = _mlp_operator()
    G = cl.GGNOperator(model, nn.CrossEntropyLoss(), batches)
    torch.testing.assert_close(G.gradient(), G.loss_and_gradient()[1])
    assert eigsh(G, k=1, v0="gradient", seed=0).converged
    with pytest.raises(TypeError, match="gradient"):
        eigsh(with_spectrum(torch.arange(1.0, 6.0)), k=1, v0="gradient")
    with pytest.raises(ValueError, match="'gradient'"):
        eigsh(G, k=1, v0="grad")


def test_gradient_start_at_a_stationary_point_falls_back_to_random():
    model = nn.Linear(3, 1, bias=False).double()
    nn.init.zeros_(model.weight)
    X = torch.randn(8, 3, dtype=torch.float64)
    data = [(X, torch.zeros(8, 1, dtype=torch.float64))]
    H = cl.HessianOperator(model, nn.MSELoss(), data)  # zero residuals: zero gradient
    res = eigsh(H, k=1, v0="gradient", seed=0, tol=1e-10)
    ref = torch.linalg.eigvalsh(2 * X.T @ X / 8)[-1]
    torch.testing.assert_close(res.eigenvalues[0], ref)


def test_eigsh_callback_sees_each_iteration_and_can_stop():
    op = with_spectrum(make_spectrum("outlier_bulk", 300, 0), seed=0)
    seen = []

    def cb(it):
        seen.append(it)
        return it.products >= 6

    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # a stop asked for is no failure
        res = eigsh(op, k=2, tol=1e-12, seed=0, callback=cb)
    assert res.stopped and not res.converged and res.num_matvecs == 6
    assert [it.products for it in seen] == sorted({it.products for it in seen})
    assert seen[-1].estimate.shape == (2,) and seen[-1].residual.shape == (2,)
    torch.testing.assert_close(seen[-1].estimate.to(res.eigenvalues.dtype), res.eigenvalues)
    full = eigsh(op, k=2, seed=0, callback=lambda it: None)
    assert full.converged and not full.stopped
    with pytest.raises(TypeError, match="callback must be None or a callable"):
        eigsh(op, k=1, callback=1)


def test_spectral_density_callback_stops_with_a_shorter_quadrature():
    eigs = torch.linspace(-1.0, 2.0, 80, dtype=torch.float64)
    op = with_spectrum(eigs, seed=0)
    steps = []
    sd = cl.spectral_density(
        op,
        num_probes=3,
        num_iter=30,
        seed=0,
        callback=lambda it: steps.append(it.info["step"]) or it.info["step"] == 7,
    )
    assert sd.stopped and sd.num_matvecs == 21 and steps == list(range(1, 8))
    full = cl.spectral_density(op, num_probes=3, num_iter=30, seed=0)
    assert not full.stopped
    # the 7-node Gauss rule is exact for moments up to degree 13: the same as the full run's
    for p in (1, 2, 5, 13):
        torch.testing.assert_close(sd.moment(p), full.moment(p), rtol=1e-8, atol=1e-10)
