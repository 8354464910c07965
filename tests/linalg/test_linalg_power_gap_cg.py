"""power_iteration, spectral_gap and cg against dense references."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from linalg_helpers import FunctionOperator, make_spectrum, with_spectrum

from curvlab import DenseOperator, cg, power_iteration, spectral_gap


@st.composite
def dominant_spectra(draw):
    """Spectra whose k largest magnitudes are separated (power iteration converges)."""
    n = draw(st.integers(6, 40))
    k = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 1000))
    g = torch.Generator().manual_seed(seed)
    bulk = torch.rand(n - k, generator=g, dtype=torch.float64) * 2 - 1  # |bulk| < 1
    signs = torch.where(torch.rand(k, generator=g) < 0.5, -1.0, 1.0).double()
    top = signs * torch.tensor([8.0, 4.0, 2.0][:k], dtype=torch.float64)
    return torch.cat([top, bulk]), k, seed


@settings(max_examples=25, deadline=None)
@given(spec=dominant_spectra(), dtype=st.sampled_from([torch.float32, torch.float64]))
def test_power_iteration_within_tolerance(spec, dtype):
    eigs, k, seed = spec
    op = with_spectrum(eigs, seed=seed, dtype=dtype)
    tol = 1e-4
    res = power_iteration(op, k=k, tol=tol, max_iter=500, seed=seed)
    assert res.converged and res.seed == seed
    ref = torch.sort(eigs[torch.argsort(eigs.abs(), descending=True)[:k]]).values
    assert torch.allclose(res.eigenvalues.double(), ref, rtol=2 * tol, atol=1e-5)
    A, X = op.matrix.double(), res.eigenvectors.double()
    true_res = torch.linalg.vector_norm(A @ X - X * res.eigenvalues.double(), dim=0)
    assert torch.allclose(res.residuals.double(), true_res, atol=1e-5)
    assert bool((res.residuals <= tol * res.eigenvalues.abs()).all())
    assert torch.allclose(X.T @ X, torch.eye(k, dtype=torch.float64), atol=1e-4)


def test_power_iteration_finds_largest_magnitude_negative():
    op = with_spectrum(torch.tensor([-10.0, 3.0, 1.0, 0.5, 0.1]), seed=0)
    res = power_iteration(op, tol=1e-8, max_iter=1000, seed=0)
    assert float(res.eigenvalues[0]) == pytest.approx(-10.0, rel=1e-8)


def test_power_iteration_eigenvalue_criterion_and_budget():
    eigs = make_spectrum("outlier_bulk", 50, seed=0)
    op = with_spectrum(eigs, seed=0)
    res = power_iteration(op, tol=1e-3, criterion="eigenvalue", seed=0)
    assert res.converged and float(res.eigenvalues[0]) == pytest.approx(30.0, rel=1e-3)
    slow = with_spectrum(torch.tensor([1.0, 0.999] + [0.1] * 30, dtype=torch.float64), seed=0)
    res = power_iteration(slow, tol=1e-10, max_iter=7, seed=0)
    assert not res.converged and res.num_matvecs == 7
    A, x = slow.matrix, res.eigenvectors[:, 0]
    assert float(res.residuals[0]) == pytest.approx(float((A @ x - res.eigenvalues[0] * x).norm()))


def test_power_iteration_bad_input():
    op = with_spectrum(torch.arange(1.0, 5.0), seed=0)
    with pytest.raises(ValueError, match="k=5 must be at most n=4"):
        power_iteration(op, k=5)
    with pytest.raises(ValueError, match="criterion"):
        power_iteration(op, criterion="norm")
    with pytest.raises(ValueError, match="max_iter must be an integer >= 1"):
        power_iteration(op, max_iter=0)
    with pytest.raises(ValueError, match="NaN or Inf"):
        power_iteration(FunctionOperator(lambda V: V * float("nan"), 4), seed=0)


# ------------------------------------------------------------------------------ spectral gap
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_spectral_gap_equals_top_two_of_eigh(seed):
    eigs = make_spectrum("outlier_bulk", 60, seed=seed)
    eigs[1] = 12.0
    op = with_spectrum(eigs, seed=seed)
    gap = spectral_gap(op, seed=seed)
    top = torch.linalg.eigvalsh(op.matrix)[-2:]
    assert gap.lambda1 == pytest.approx(float(top[1]), rel=1e-9)
    assert gap.lambda2 == pytest.approx(float(top[0]), rel=1e-9)
    assert gap.difference == pytest.approx(float(top[1] - top[0]), rel=1e-8)
    assert gap.ratio == pytest.approx(float(top[1] / top[0]), rel=1e-8)
    assert gap.residuals.shape == (2,) and gap.converged and gap.num_matvecs > 0
    assert gap.seed == seed


def test_spectral_gap_signed_and_small_cases():
    op = with_spectrum(torch.tensor([-50.0, 2.0, 1.0, 0.0]), seed=0)
    gap = spectral_gap(op, seed=0)  # algebraic, not magnitude: -50 is not lambda1
    assert gap.lambda1 == pytest.approx(2.0) and gap.lambda2 == pytest.approx(1.0)
    op2 = DenseOperator(torch.tensor([[2.0, 0.0], [0.0, 0.0]], dtype=torch.float64))
    g2 = spectral_gap(op2)
    assert (g2.lambda1, g2.lambda2, g2.ratio) == (2.0, 0.0, float("inf"))
    with pytest.raises(ValueError, match="n >= 2"):
        spectral_gap(DenseOperator(torch.ones(1, 1)))


# ------------------------------------------------------------------------------------------- cg
@settings(max_examples=20, deadline=None)
@given(n=st.integers(2, 40), seed=st.integers(0, 1000), damping=st.sampled_from([0.0, 0.5]))
def test_cg_solves_spd(n, seed, damping):
    g = torch.Generator().manual_seed(seed)
    eigs = 0.1 + 10 * torch.rand(n, generator=g, dtype=torch.float64)
    op = with_spectrum(eigs, seed=seed)
    b = torch.randn(n, generator=g, dtype=torch.float64)
    res = cg(op, b, damping=damping, tol=1e-10, max_iter=10 * n)
    x = torch.linalg.solve(op.matrix + damping * torch.eye(n, dtype=torch.float64), b)
    assert res.converged and not res.indefinite
    assert torch.allclose(res.x, x, atol=1e-7 * float(x.abs().max()) + 1e-12)
    true_res = float((b - op.matrix @ res.x - damping * res.x).norm())
    assert true_res <= 1e-8 * float(b.norm())


def test_cg_reports_indefinite_instead_of_garbage():
    op = with_spectrum(torch.tensor([3.0, 2.0, -1.0, 1.0]), seed=0)
    b = torch.ones(4, dtype=torch.float64)
    res = cg(op, b)
    assert res.indefinite and not res.converged
    # a shift that makes it positive definite fixes it
    ok = cg(op, b, damping=2.0)
    assert ok.converged and not ok.indefinite


def test_cg_max_iter_and_zero_rhs_and_x0():
    op = with_spectrum(torch.linspace(1.0, 100.0, 50, dtype=torch.float64), seed=0)
    b = torch.ones(50, dtype=torch.float64)
    res = cg(op, b, max_iter=3)
    assert not res.converged and res.num_iter == 3
    zero = cg(op, torch.zeros(50, dtype=torch.float64))
    assert zero.converged and float(zero.x.abs().max()) == 0.0
    x = torch.linalg.solve(op.matrix, b)
    warm = cg(op, b, x0=x)
    assert warm.converged and warm.num_iter == 1


def test_cg_bad_input():
    op = with_spectrum(torch.arange(1.0, 4.0), seed=0)
    with pytest.raises(ValueError, match="b must have shape"):
        cg(op, torch.ones(4, dtype=torch.float64))
    with pytest.raises(ValueError, match="damping"):
        cg(op, torch.ones(3, dtype=torch.float64), damping=-1.0)
    with pytest.raises(ValueError, match="NaN or Inf"):
        cg(op, torch.tensor([1.0, float("nan"), 0.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="NaN or Inf"):
        cg(FunctionOperator(lambda V: V * float("nan"), 3), torch.ones(3, dtype=torch.float64))
