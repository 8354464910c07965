"""eigsh warm starts through ``v0`` (what curvlab.track's CurvatureTracker relies on): start
vectors from a nearby operator give the same eigenvalues as torch.linalg.eigvalsh (float64) in
fewer products than a random start.

eigsh already takes a start vector or a block of ``c <= block_size`` columns (``v0``), so the
tracker needs no new argument: it passes the previous eigenvector (``k = 1``), the sum of the
previous eigenvectors (``k > 1``, one column), or the whole block when ``block_size >= k``.
"""

import functools

import pytest
import torch
from linalg_helpers import orthogonal

from curvlab import DenseOperator
from curvlab import eigsh as _eigsh

# These tests pin the residual rule's properties (true residuals within tol, products per
# block, warm-start savings at a fixed residual accuracy); the default rule (certified
# eigenvalue accuracy) has its own tests in test_linalg_eigsh_criterion.py.
eigsh = functools.partial(_eigsh, criterion="residual")

DT = torch.float64


def drifting_pair(n=300, seed=0, drift=1e-2):
    """A spectrum with a few separated top eigenvalues and a bulk, and a small symmetric
    perturbation of it (one "training step")."""
    g = torch.Generator().manual_seed(seed)
    e = torch.rand(n, generator=g, dtype=DT)
    e[:4] = torch.tensor([10.0, 8.0, 6.5, 5.0], dtype=DT)
    Q = orthogonal(n, seed)
    A = (Q * e) @ Q.T
    E = torch.randn(n, n, generator=g, dtype=DT)
    B = A + drift * (E + E.T) / 2
    return (A + A.T) / 2, (B + B.T) / 2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_warm_start_vector_matches_eigvalsh_in_fewer_products(seed):
    A, B = drifting_pair(seed=seed)
    prev = eigsh(DenseOperator(A), k=1, seed=seed)
    cold = eigsh(DenseOperator(B), k=1, seed=seed)
    warm = eigsh(DenseOperator(B), k=1, seed=seed, v0=prev.eigenvectors[:, 0])
    ref = torch.linalg.eigvalsh(B)[-1:]
    torch.testing.assert_close(warm.eigenvalues, ref, rtol=1e-10, atol=0)
    torch.testing.assert_close(cold.eigenvalues, ref, rtol=1e-10, atol=0)
    assert warm.converged and cold.converged
    assert warm.num_matvecs < cold.num_matvecs


@pytest.mark.parametrize("seed", [0, 1])
def test_warm_start_sum_of_eigenvectors_for_several_eigenvalues(seed):
    A, B = drifting_pair(seed=seed)
    prev = eigsh(DenseOperator(A), k=3, seed=seed)
    kw = dict(k=3, seed=seed, check_multiplicity=False)
    cold = eigsh(DenseOperator(B), **kw)
    warm = eigsh(DenseOperator(B), v0=prev.eigenvectors.sum(dim=1), **kw)
    ref = torch.linalg.eigvalsh(B)[-3:]
    torch.testing.assert_close(warm.eigenvalues, ref, rtol=1e-10, atol=0)
    assert warm.converged
    assert warm.num_matvecs < cold.num_matvecs


def test_warm_start_block_with_block_size():
    A, B = drifting_pair(seed=3)
    prev = eigsh(DenseOperator(A), k=3, seed=0)
    kw = dict(k=3, seed=0, block_size=3, check_multiplicity=False)
    cold = eigsh(DenseOperator(B), **kw)
    warm = eigsh(DenseOperator(B), v0=prev.eigenvectors, **kw)
    torch.testing.assert_close(warm.eigenvalues, torch.linalg.eigvalsh(B)[-3:], rtol=1e-10, atol=0)
    assert warm.num_matvecs < cold.num_matvecs


def test_exact_eigenvector_start_converges_at_once():
    A, _ = drifting_pair(seed=4)
    v = torch.linalg.eigh(A).eigenvectors[:, -1]
    res = eigsh(DenseOperator(A), k=1, seed=0, v0=v)
    assert res.converged and res.num_matvecs <= 2
    torch.testing.assert_close(res.eigenvalues, torch.linalg.eigvalsh(A)[-1:], rtol=1e-12, atol=0)


def test_v0_with_more_columns_than_the_block_is_refused():
    A, _ = drifting_pair(n=50, seed=5)
    with pytest.raises(ValueError, match="c <= 1"):
        eigsh(DenseOperator(A), k=2, v0=torch.ones(50, 2, dtype=DT))
