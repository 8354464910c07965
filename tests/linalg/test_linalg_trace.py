"""Trace and diagonal estimators: unbiasedness, exactness, error rates, blocked products."""

import math

import pytest
import torch
from linalg_helpers import FunctionOperator, with_spectrum

from curvlab import DenseOperator, diagonal, trace

METHODS = ["hutchinson", "hutch++", "xtrace"]


def decaying(n=100, power=2.0, seed=0):
    eigs = torch.arange(1, n + 1, dtype=torch.float64) ** -power
    return with_spectrum(eigs, seed=seed), float(eigs.sum())


def indefinite(n=60, seed=0):
    g = torch.Generator().manual_seed(seed)
    B = torch.randn(n, n, generator=g, dtype=torch.float64)
    A = (B + B.T) / 2 + 3 * torch.eye(n, dtype=torch.float64)
    return DenseOperator(A), float(torch.trace(A))


def counting(op):
    calls = []

    def fn(V):
        calls.append(V.shape[1])
        return op.matrix @ V

    return FunctionOperator(fn, op.shape[0], op.dtype), calls


@pytest.mark.parametrize("method", METHODS)
def test_trace_unbiased_over_seeds(method):
    op, tr = indefinite()
    est = torch.tensor(
        [trace(op, num_matvecs=12, method=method, seed=s).estimate for s in range(300)]
    )
    se = float(est.std()) / math.sqrt(est.numel())
    assert abs(float(est.mean()) - tr) < 4 * se


@pytest.mark.parametrize("method", METHODS)
def test_trace_result_fields_and_reproducibility(method):
    op, _ = indefinite()
    a = trace(op, num_matvecs=20, method=method, seed=5)
    b = trace(op, num_matvecs=20, method=method, seed=5)
    assert a.estimate == b.estimate and a.std_error == b.std_error
    assert a.method == method and a.seed == 5 and a.num_matvecs == 20
    assert isinstance(a.estimate, float) and a.std_error > 0
    g = torch.Generator().manual_seed(1)
    assert isinstance(trace(op, num_matvecs=20, method=method, seed=g).seed, int)


@pytest.mark.parametrize("rank", [1, 3, 5])
def test_hutchpp_exact_for_low_rank(rank):
    g = torch.Generator().manual_seed(rank)
    L = torch.randn(80, rank, generator=g, dtype=torch.float64)
    S = torch.randn(rank, generator=g, dtype=torch.float64)  # indefinite low rank
    A = (L * S) @ L.T
    op = DenseOperator((A + A.T) / 2)
    for m in (3 * rank, 3 * rank + 2):
        res = trace(op, num_matvecs=m, method="hutch++", seed=0)
        assert res.estimate == pytest.approx(float(torch.trace(A)), abs=1e-9 * float(A.abs().max()))
        assert res.num_matvecs == m


def test_xtrace_and_xdiag_exact_below_half_the_products():
    g = torch.Generator().manual_seed(0)
    L = torch.randn(80, 4, generator=g, dtype=torch.float64)
    op = DenseOperator(L @ L.T)
    res = trace(op, num_matvecs=10, method="xtrace", seed=0)  # 5 vectors > rank 4
    assert res.estimate == pytest.approx(float((L * L).sum()), rel=1e-10)
    d = diagonal(op, num_matvecs=10, method="xdiag", seed=0)
    assert torch.allclose(d.estimate, (L * L).sum(1), atol=1e-10)


def test_hutchinson_variance_matches_theory():
    # Rademacher: Var(z^T A z) = 2 (||A||_F^2 - sum_i A_ii^2); the mean of m has that / m
    op, tr = indefinite(n=40)
    A = op.matrix
    var1 = 2 * (float((A * A).sum()) - float((torch.diagonal(A) ** 2).sum()))
    for m in (4, 16, 64):
        est = torch.tensor(
            [trace(op, num_matvecs=m, method="hutchinson", seed=s).estimate for s in range(400)]
        )
        emp = float(((est - tr) ** 2).mean())
        assert emp == pytest.approx(var1 / m, rel=0.3)


def test_error_rates_hutchpp_faster_than_hutchinson():
    op, tr = decaying(n=100, power=2.0)

    def rmse(method, m):
        est = torch.tensor(
            [trace(op, num_matvecs=m, method=method, seed=s).estimate for s in range(100)]
        )
        return float(((est - tr) ** 2).mean().sqrt())

    h12, h48 = rmse("hutchinson", 12), rmse("hutchinson", 48)
    p12, p48 = rmse("hutch++", 12), rmse("hutch++", 48)
    x48 = rmse("xtrace", 48)
    assert h48 / h12 == pytest.approx(0.5, rel=0.35)  # m^{-1/2}
    assert p48 / p12 < 0.25 * 1.2  # at least m^{-1} on a decaying spectrum
    assert p48 < h48 / 10
    assert x48 < p48  # XTrace beats Hutch++ at equal products


def test_std_error_is_calibrated_for_hutchinson_and_hutchpp():
    op, tr = indefinite()
    for method in ("hutchinson", "hutch++"):
        res = [trace(op, num_matvecs=30, method=method, seed=s) for s in range(200)]
        est = torch.tensor([r.estimate for r in res])
        mean_se = sum(r.std_error for r in res) / len(res)
        assert mean_se == pytest.approx(float(est.std()), rel=0.35)


@pytest.mark.parametrize("method,calls", [("hutchinson", [30]), ("hutch++", [10, 20])])
def test_trace_uses_blocked_products(method, calls):
    op, _ = indefinite()
    cop, seen = counting(op)
    trace(cop, num_matvecs=30, method=method, seed=0)
    assert seen == calls
    cop, seen = counting(op)
    trace(cop, num_matvecs=30, method=method, seed=0, batch_size=7)
    assert max(seen) <= 7 and sum(seen) == 30


def test_trace_bad_input():
    op, _ = indefinite(n=10)
    with pytest.raises(ValueError, match="method must be one of"):
        trace(op, method="girard")
    with pytest.raises(ValueError, match="hutch\\+\\+ needs num_matvecs >= 3"):
        trace(op, num_matvecs=2)
    with pytest.raises(ValueError, match="xtrace needs num_matvecs >= 4"):
        trace(op, num_matvecs=3, method="xtrace")
    with pytest.raises(ValueError, match="to_dense"):
        trace(op, num_matvecs=20, method="xtrace")
    with pytest.raises(ValueError, match="num_matvecs must be an integer >= 1"):
        trace(op, num_matvecs=0, method="hutchinson")
    nan_op = FunctionOperator(lambda V: V * float("inf"), 10)
    with pytest.raises(ValueError, match="NaN or Inf"):
        trace(nan_op, num_matvecs=6, seed=0)
    one = trace(op, num_matvecs=1, method="hutchinson", seed=0)
    assert math.isnan(one.std_error)


# ---------------------------------------------------------------------------------- diagonal
@pytest.mark.parametrize("method", ["hutchinson", "xdiag"])
def test_diagonal_unbiased(method):
    op, _ = indefinite(n=30)
    d = torch.diagonal(op.matrix)
    est = torch.stack(
        [diagonal(op, num_matvecs=10, method=method, seed=s).estimate for s in range(300)]
    )
    se = est.std(dim=0) / math.sqrt(est.shape[0])
    assert bool(((est.mean(0) - d).abs() < 4.5 * se).all())


def test_diagonal_hutchinson_exact_on_diagonal_and_std_error():
    A = torch.diag(torch.arange(1.0, 8.0, dtype=torch.float64))
    res = diagonal(DenseOperator(A), num_matvecs=3, seed=0)
    assert torch.equal(res.estimate, torch.diagonal(A))
    assert torch.equal(res.std_error, torch.zeros(7, dtype=torch.float64))
    assert res.method == "hutchinson" and res.num_matvecs == 3 and res.seed == 0
    op, _ = indefinite(n=30)
    res = diagonal(op, num_matvecs=50, seed=1)
    # entry j has variance sum_{l != j} A_jl^2 / m
    A = op.matrix
    var = ((A * A).sum(1) - torch.diagonal(A) ** 2) / 50
    assert torch.allclose(res.std_error**2, var, rtol=0.6)


def test_xdiag_beats_hutchinson_on_dominant_eigenvalues():
    eigs = torch.cat([torch.tensor([50.0, 30.0, 20.0]), 0.01 * torch.ones(97)]).double()
    op = with_spectrum(eigs, seed=0)
    d = torch.diagonal(op.matrix)

    def err(method):
        return sum(
            float((diagonal(op, num_matvecs=20, method=method, seed=s).estimate - d).norm())
            for s in range(10)
        )

    assert err("xdiag") < err("hutchinson") / 10


def test_diagonal_bad_input():
    op, _ = indefinite(n=10)
    with pytest.raises(ValueError, match="method must be one of"):
        diagonal(op, method="exact")
    with pytest.raises(ValueError, match="xdiag needs num_matvecs >= 4"):
        diagonal(op, num_matvecs=2, method="xdiag")
    with pytest.raises(TypeError, match="integer"):
        diagonal(op, num_matvecs=2.0)
