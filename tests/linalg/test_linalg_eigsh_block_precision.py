"""eigsh (issue 17): a block adds b columns per step, the iteration runs on the Lanczos residual
estimate with true residuals reported, half-precision operators keep a float32 basis, and a
previous EigenResult warm-starts. References: torch.linalg.eigvalsh in float64."""

import functools

import pytest
import torch
from linalg_helpers import with_spectrum

import curvlab as cl
from curvlab import DenseOperator, lanczos
from curvlab import eigsh as _eigsh

# These tests pin the residual rule's properties (true residuals within tol, products per
# block, warm-start savings at a fixed residual accuracy); the default rule (certified
# eigenvalue accuracy) has its own tests in test_linalg_eigsh_criterion.py.
eigsh = functools.partial(_eigsh, criterion="residual")

DT = torch.float64


class Recording:
    """An OperatorLike that records the number of columns of every product."""

    def __init__(self, A):
        self.A, self.shape, self.dtype, self.device = A, A.shape, A.dtype, A.device
        self.widths = []

    def __matmul__(self, V):
        self.widths.append(1 if V.dim() == 1 else V.shape[1])
        return self.A @ V


def spectrum(n=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    e = torch.rand(n, generator=g, dtype=DT)
    e[:10] = torch.linspace(3.0, 1.5, 10, dtype=DT)
    return e


@pytest.mark.parametrize("k,b", [(1, 4), (3, 8), (1, 8), (2, 3)])
def test_block_adds_b_columns_per_step(k, b):
    op = with_spectrum(spectrum(), seed=1)
    rec = Recording(op.matrix)
    res = eigsh(rec, k=k, block_size=b, seed=0, tol=1e-8)
    # every product is a full block of b columns (before this fix: b, then min(k, b), ...)
    assert rec.widths[:-1] == [b] * (len(rec.widths) - 1)
    assert len(rec.widths) >= 2 and rec.widths[1] == b
    assert sum(rec.widths) == res.num_matvecs
    ref = torch.linalg.eigvalsh(op.matrix)[-k:]
    torch.testing.assert_close(res.eigenvalues, ref, rtol=1e-12, atol=0)
    assert res.converged


@pytest.mark.parametrize("b", [1, 4])
def test_block_basis_grows_by_b_through_restarts(b):
    op = with_spectrum(spectrum(), seed=2)
    rec = Recording(op.matrix)
    res = eigsh(rec, k=2, block_size=b, ncv=20, seed=0, tol=1e-10, check_multiplicity=False)
    assert set(rec.widths[:-1]) == {b}
    ref = torch.linalg.eigvalsh(op.matrix)[-2:]
    torch.testing.assert_close(res.eigenvalues, ref, rtol=1e-12, atol=0)


@pytest.mark.parametrize(
    "k,b,which", [(1, None, "LA"), (5, None, "LA"), (3, 2, "SA"), (4, None, "BE")]
)
@pytest.mark.parametrize("tol", [1e-4, 1e-8])
def test_converged_results_equal_eigvalsh_and_report_true_residuals(k, b, which, tol):
    e = spectrum(seed=3)
    e[-3:] = torch.tensor([-2.0, -1.7, -1.2], dtype=DT)
    op = with_spectrum(e, seed=3)
    res = eigsh(op, k=k, which=which, block_size=b, tol=tol, seed=0)
    assert res.converged
    ev = torch.linalg.eigvalsh(op.matrix)
    top = ev[ev.numel() - (k - k // 2) :]
    ref = {"LA": ev[-k:], "SA": ev[:k], "BE": torch.cat([ev[: k // 2], top])}[which]
    # the eigenvalue error is at most the residual (Bauer-Fike), here within tol relative
    assert bool(((res.eigenvalues - ref).abs() <= tol * ref.abs()).all())
    # the reported residuals are ||A v - lambda v||, computed here independently
    X = res.eigenvectors
    true = torch.linalg.vector_norm(op.matrix @ X - X * res.eigenvalues, dim=0)
    torch.testing.assert_close(res.residuals, true, rtol=1e-6, atol=1e-13)
    assert bool((true <= tol * res.eigenvalues.abs()).all())


def test_fewer_products_than_stopping_on_a_looser_rule_is_not_bought_with_accuracy():
    # the estimate decides; the true residuals confirm: same products as the exact rule
    op = with_spectrum(spectrum(seed=4), seed=4)
    for k in (1, 10):
        res = eigsh(op, k=k, seed=0)
        assert res.converged and bool((res.residuals <= 1e-6 * res.eigenvalues.abs()).all())


# ------------------------------------------------------------------------- half precision
@pytest.mark.parametrize("half", [torch.bfloat16, torch.float16])
def test_half_precision_operator_keeps_a_float32_basis(half):
    e = spectrum(n=200, seed=5)
    op = with_spectrum(e, seed=5, dtype=half)
    ev = torch.linalg.eigvalsh(op.matrix.double())  # the spectrum of the rounded matrix
    res = eigsh(op, k=3, seed=0, tol=1e-2)
    assert res.eigenvalues.dtype == torch.float32 and res.eigenvectors.dtype == torch.float32
    X = res.eigenvectors.double()
    # orthonormal to float32 precision (a half-precision basis would be off by ~1e-2)
    assert float((X.T @ X - torch.eye(3, dtype=DT)).abs().max()) < 1e-5
    eps = torch.finfo(half).eps
    torch.testing.assert_close(res.eigenvalues.double(), ev[-3:], rtol=0, atol=10 * eps * 3.0)

    lz = lanczos(op, 40, seed=0)
    assert lz.basis.dtype == torch.float32
    Vb = lz.basis.double()
    assert float((Vb.T @ Vb - torch.eye(lz.num_iter, dtype=DT)).abs().max()) < 1e-5
    theta = lz.ritz()[0].double()
    assert abs(float(theta[-1]) - float(ev[-1])) < 10 * eps * 3.0

    sd = cl.spectral_density(op, num_probes=4, num_iter=20, seed=0)
    assert sd.nodes.dtype == torch.float32
    trace = float(op.matrix.double().trace())
    assert sd.dim * sd.moment(1) == pytest.approx(trace, rel=0.1)

    p = cl.power_iteration(op, seed=0, tol=1e-2, max_iter=300)
    assert p.eigenvalues.dtype == torch.float32
    assert float(p.eigenvalues[0]) == pytest.approx(float(ev[-1]), abs=20 * eps * 3.0)


# ---------------------------------------------------------------------- EigenResult warm start
def drifting(n=300, seed=0, drift=1e-2):
    g = torch.Generator().manual_seed(seed)
    A = with_spectrum(spectrum(n, seed), seed=seed).matrix
    E = torch.randn(n, n, generator=g, dtype=DT)
    B = A + drift * (E + E.T) / 2
    return A, (B + B.T) / 2


@pytest.mark.parametrize("k,b", [(1, None), (3, None), (3, 3), (4, 2)])
def test_warm_start_from_an_eigen_result(k, b):
    A, B = drifting(seed=k)
    prev = eigsh(DenseOperator(A), k=k, seed=0, block_size=b)
    kw = dict(k=k, seed=1, block_size=b, check_multiplicity=False)
    cold = eigsh(DenseOperator(B), **kw)
    warm = eigsh(DenseOperator(B), v0=prev, **kw)
    ref = torch.linalg.eigvalsh(B)[-k:]
    torch.testing.assert_close(warm.eigenvalues, ref, rtol=1e-10, atol=0)
    assert warm.converged
    assert warm.num_matvecs < cold.num_matvecs


def test_warm_start_needs_eigenvectors():
    A, _ = drifting(n=50)
    prev = eigsh(DenseOperator(A), k=2, seed=0, return_eigenvectors=False)
    with pytest.raises(ValueError, match="return_eigenvectors=True"):
        eigsh(DenseOperator(A), k=2, v0=prev)
    with pytest.raises(TypeError, match="EigenResult"):
        eigsh(DenseOperator(A), k=2, v0=[1.0] * 50)
