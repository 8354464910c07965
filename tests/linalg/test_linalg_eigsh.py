"""eigsh against torch.linalg.eigh (dense float64 references) and scipy's ordering."""

import numpy as np
import pytest
import scipy.sparse.linalg as spla
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from linalg_helpers import (
    FunctionOperator,
    make_spectrum,
    reference_selection,
    spectra,
    with_spectrum,
)
from torch import nn

import curvlab as cl
from curvlab import DenseOperator, eigsh, power_iteration

WHICHES = ["LA", "SA", "LM", "BE"]
DTYPES = [torch.float32, torch.float64]


def check_pairs(op, res, tol_abs):
    """Residuals are the true ones, eigenvectors orthonormal, values ascending."""
    A = op.matrix.double()
    X = res.eigenvectors.double()
    lam = res.eigenvalues.double()
    true_res = torch.linalg.vector_norm(A @ X - X * lam, dim=0)
    assert torch.allclose(res.residuals.double(), true_res, atol=tol_abs, rtol=1e-2)
    k = X.shape[1]
    assert torch.allclose(X.T @ X, torch.eye(k, dtype=torch.float64), atol=1e-4)
    assert bool((lam[1:] >= lam[:-1]).all())


@settings(max_examples=30, deadline=None)
@given(
    spec=spectra(min_n=8, max_n=50),
    which=st.sampled_from(WHICHES),
    k_frac=st.floats(0.0, 1.0),
    dtype=st.sampled_from(DTYPES),
)
def test_eigsh_matches_eigh(spec, which, k_frac, dtype):
    kind, eigs, seed = spec
    n = eigs.numel()
    k = 1 + int(k_frac * (min(20, n - 1) - 1))
    op = with_spectrum(eigs, seed=seed, dtype=dtype)
    eigs = torch.linalg.eigvalsh(op.matrix.double())  # the exact spectrum of the cast matrix
    res = eigsh(op, k=k, which=which, seed=seed)
    scale = float(eigs.abs().max())
    eps = torch.finfo(dtype).eps
    assert res.eigenvalues.shape == (k,) and res.eigenvalues.dtype == dtype
    assert res.eigenvectors.shape == (n, k)
    assert res.seed == seed
    ref = reference_selection(eigs, k, which)
    got = res.eigenvalues.double()
    # every reported pair is an eigenpair up to its residual (Bauer-Fike) ...
    slack = 50 * eps * scale
    dist = (got[:, None] - eigs[None, :]).abs().min(dim=1).values
    assert bool((dist <= res.residuals.double() + slack).all())
    # ... and they are the wanted ones (compare magnitudes for LM: ties are ambiguous)
    if which == "LM":
        got, ref = torch.sort(got.abs()).values, torch.sort(ref.abs()).values
    tol_vals = 10 * float(res.residuals.max()) + (1e-9 if dtype == torch.float64 else 1e-4) * scale
    assert torch.allclose(got, ref, atol=tol_vals, rtol=0), (kind, got, ref)
    check_pairs(op, res, tol_abs=slack)
    if res.converged:  # the default rule: certified relative eigenvalue accuracy
        assert res.criterion == "eigenvalue"
        assert bool((res.eigenvalue_errors <= 1e-6 * res.eigenvalues.abs()).all())
    if dtype == torch.float64 and kind not in ("near_zero", "low_rank", "clustered"):
        # no eigenvalue at the rounding floor: the relative tolerance is reachable
        assert res.converged


@pytest.mark.parametrize("which", WHICHES)
@pytest.mark.parametrize("k", [1, 2, 5, 20])
def test_eigsh_outlier_bulk_all_which(which, k):
    eigs = make_spectrum("outlier_bulk", 120, seed=k)
    eigs[1:4] = torch.tensor([-7.0, 5.0, -3.0], dtype=torch.float64)
    op = with_spectrum(eigs, seed=1)
    res = eigsh(op, k=k, which=which, seed=0, criterion="residual")
    ref = reference_selection(eigs, k, which)
    assert torch.allclose(res.eigenvalues, ref, atol=1e-8)
    assert res.converged
    if k <= 5:
        assert res.num_matvecs < 120  # far fewer products than a dense solve


def test_eigsh_order_matches_scipy():
    eigs = np.array([-10.0, -5.0, -1.0, 0.5, 2.0, 3.0, 7.0, 9.0] + list(np.linspace(-0.1, 0.1, 30)))
    op = with_spectrum(torch.tensor(eigs), seed=3)
    A = op.matrix.numpy()
    for which in WHICHES:
        for k in (2, 3, 4):
            expected = spla.eigsh(A, k=k, which=which)[0]
            got = eigsh(op, k=k, which=which, seed=0).eigenvalues.numpy()
            np.testing.assert_allclose(got, expected, atol=1e-9)


def test_eigsh_repeated_top_eigenvalue_beyond_the_basis_size():
    # 4 copies of 5 and 3 of 3 in a 200-dimensional space: single-vector Lanczos sees one copy
    eigs = torch.tensor([5.0] * 4 + [3.0] * 3 + torch.linspace(0, 2, 193).tolist())
    op = with_spectrum(eigs, seed=0)
    res = eigsh(op, k=6, seed=0)
    assert torch.allclose(res.eigenvalues, torch.tensor([3.0, 3, 5, 5, 5, 5], dtype=op.dtype))
    # the multiplicity check is what finds the copies
    res_nocheck = eigsh(op, k=6, seed=0, check_multiplicity=False, ncv=20)
    assert res_nocheck.num_matvecs < res.num_matvecs


def test_eigsh_k_close_to_n_is_exact():
    eigs = make_spectrum("mixed", 21, seed=2)
    op = with_spectrum(eigs, seed=2)
    res = eigsh(op, k=20, which="SA", seed=0)
    assert torch.allclose(res.eigenvalues, torch.sort(eigs).values[:20], atol=1e-10)
    assert res.num_matvecs <= 21


@pytest.mark.parametrize("block_size", [2, 3])
def test_eigsh_block(block_size):
    eigs = make_spectrum("outlier_bulk", 80, seed=4)
    op = with_spectrum(eigs, seed=4)
    res = eigsh(op, k=4, block_size=block_size, seed=1)
    assert torch.allclose(res.eigenvalues, torch.sort(eigs).values[-4:], atol=1e-8)
    assert res.converged


def test_eigsh_seed_reproducible_and_generator():
    op = with_spectrum(make_spectrum("outlier_bulk", 60, seed=5), seed=5)
    a, b = eigsh(op, k=3, seed=7), eigsh(op, k=3, seed=7)
    assert torch.equal(a.eigenvectors, b.eigenvectors) and a.num_matvecs == b.num_matvecs
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    c, d = eigsh(op, k=3, seed=g1), eigsh(op, k=3, seed=g2)
    assert torch.equal(c.eigenvectors, d.eigenvectors)
    assert isinstance(c.seed, int)
    # the recorded seed reproduces the run
    assert torch.equal(eigsh(op, k=3, seed=c.seed).eigenvectors, c.eigenvectors)
    assert isinstance(eigsh(op, k=1).seed, int)


def test_eigsh_respects_max_matvecs_and_reports_non_convergence():
    eigs = make_spectrum("clustered", 200, seed=1)
    op = with_spectrum(eigs, seed=1)
    res = eigsh(op, k=5, max_matvecs=12, seed=0)
    assert res.num_matvecs <= 12
    assert not res.converged
    A = op.matrix
    X = res.eigenvectors
    assert torch.allclose(
        res.residuals, torch.linalg.vector_norm(A @ X - X * res.eigenvalues, dim=0), atol=1e-10
    )


def test_eigsh_return_eigenvectors_false_and_v0():
    eigs = torch.arange(1.0, 41.0, dtype=torch.float64)
    op = with_spectrum(eigs, seed=0)
    res = eigsh(op, k=2, return_eigenvectors=False, v0=torch.ones(40, dtype=torch.float64))
    assert res.eigenvectors is None
    assert torch.allclose(res.eigenvalues, torch.tensor([39.0, 40.0], dtype=torch.float64))


def test_eigsh_fewer_matvecs_than_power_iteration():
    # Hessian-like spectrum: top eigenvalue 1, second 0.93 (as on a trained digits MLP)
    eigs = 0.05 * torch.rand(300, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    eigs[:3] = torch.tensor([1.0, 0.93, 0.6], dtype=torch.float64)
    op = with_spectrum(eigs, seed=0)

    def needed(run):
        return next(m for m in range(1, 400) if abs(run(m) - 1.0) <= 1e-4)

    m_lanczos = needed(lambda m: float(eigsh(op, k=1, max_matvecs=m, tol=0, seed=1).eigenvalues))
    m_power = needed(
        lambda m: float(power_iteration(op, k=1, max_iter=m, tol=0, seed=1).eigenvalues)
    )
    assert m_lanczos <= 25
    assert 2 * m_lanczos < m_power


def _tiny_mlp_problem():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    X = torch.randn(20, 3, dtype=torch.float64)
    y = torch.randint(0, 2, (20,))
    return model, nn.CrossEntropyLoss(), [(X[:12], y[:12]), (X[12:], y[12:])]


@pytest.mark.parametrize("which", ["LA", "SA", "LM"])
def test_eigsh_on_network_hessian(which):
    from reference import dense_hessian

    model, loss_fn, data = _tiny_mlp_problem()
    H = dense_hessian(model, loss_fn, data)
    eigs = torch.linalg.eigvalsh((H + H.T) / 2)
    op = cl.HessianOperator(model, loss_fn, data)
    res = eigsh(op, k=3, which=which, seed=0, tol=1e-8, criterion="residual")  # vectors too
    ref = reference_selection(eigs, 3, which)
    assert torch.allclose(res.eigenvalues, ref, atol=1e-9)
    X = res.eigenvectors
    assert torch.allclose(H @ X, X * res.eigenvalues, atol=1e-7)


# ------------------------------------------------------------------------------- bad input
def test_eigsh_bad_input():
    op = with_spectrum(torch.arange(5.0), seed=0)
    with pytest.raises(ValueError, match="torch.linalg.eigh"):
        eigsh(op, k=5)
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        eigsh(op, k=0)
    with pytest.raises(TypeError, match="integer"):
        eigsh(op, k=1.5)
    with pytest.raises(ValueError, match="which must be one of"):
        eigsh(op, k=1, which="LR")
    with pytest.raises(ValueError, match="tol"):
        eigsh(op, k=1, tol=-1.0)
    with pytest.raises(ValueError, match="v0"):
        eigsh(op, k=1, v0=torch.ones(4, dtype=torch.float64))
    with pytest.raises(ValueError, match="non-zero"):
        eigsh(op, k=1, v0=torch.zeros(5, dtype=torch.float64))
    with pytest.raises(TypeError, match="seed"):
        eigsh(op, k=1, seed="a")
    with pytest.raises(TypeError, match="CurvatureOperator"):
        eigsh(torch.eye(3), k=1)


def test_eigsh_non_square_operator():
    class Rect:
        shape = (3, 4)
        dtype = torch.float64
        device = torch.device("cpu")

    with pytest.raises(ValueError, match="square"):
        eigsh(Rect(), k=1)


def test_eigsh_nan_product():
    op = FunctionOperator(lambda V: V * float("nan"), 6)
    with pytest.raises(ValueError, match="NaN or Inf"):
        eigsh(op, k=1, seed=0)


def test_eigsh_zero_operator():
    op = DenseOperator(torch.zeros(6, 6, dtype=torch.float64))
    res = eigsh(op, k=2, seed=0)
    assert torch.equal(res.eigenvalues, torch.zeros(2, dtype=torch.float64))
    assert float(res.residuals.max()) == 0.0


def test_an_unconverged_run_warns_with_what_to_do():
    import warnings

    g = torch.Generator().manual_seed(0)
    A = cl.DenseOperator(torch.diag(torch.rand(300, generator=g, dtype=torch.float64)))
    with pytest.warns(cl.ConvergenceWarning, match="did not converge in 6 products") as rec:
        res = cl.eigsh(A, k=1, seed=0, tol=1e-10, max_matvecs=6)
    assert not res.converged
    assert rec[0].filename == __file__  # points at the caller, not into curvlab
    with pytest.warns(cl.ConvergenceWarning, match="power_iteration did not converge"):
        cl.power_iteration(A, k=1, seed=0, tol=1e-10, max_iter=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a converged run is quiet
        assert cl.eigsh(A, k=1, seed=0, tol=1e-4).converged
