"""callback= and progress= of power_iteration, trace, diagonal and cg (curvlab/_progress.py).

The truths: the products an operator saw (recorded by the operator itself), the same estimator
run with the smaller budget the callback stopped at, and CG's own iterates.
"""

import warnings

import pytest
import torch
from linalg_helpers import FunctionOperator, with_spectrum

from curvlab import ConvergenceWarning, cg, diagonal, power_iteration, trace


def recording(M: torch.Tensor):
    """An operator ``V -> M V`` that keeps the columns it was multiplied with."""
    seen = []

    def fn(V):
        V2 = V if V.dim() == 2 else V[:, None]
        seen.append(V2.clone())
        out = M @ V2
        return out if V.dim() == 2 else out[:, 0]

    return FunctionOperator(fn, M.shape[0]), seen


def spd(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    B = torch.randn(n, n, generator=g, dtype=torch.float64)
    return B @ B.T / n + torch.eye(n, dtype=torch.float64)


def stop_after(products, log):
    def cb(it):
        log.append(it)
        return it.products >= products

    return cb


# ------------------------------------------------------------------------------------ trace
def test_trace_hutchinson_stopped_is_the_mean_over_the_probes_done():
    M = spd()
    op, seen = recording(M)
    log = []
    res = trace(
        op, method="hutchinson", num_matvecs=40, batch_size=6, seed=0, callback=stop_after(12, log)
    )
    Z = torch.cat(seen, dim=1)
    assert Z.shape[1] == 12 and res.num_matvecs == 12 and res.stopped
    assert res.method == "hutchinson"
    truth = float(((Z * (M @ Z)).sum(dim=0)).mean())
    assert res.estimate == pytest.approx(truth, rel=1e-12)
    assert [it.products for it in log] == [6, 12]
    # the callback saw the estimate the result holds
    assert float(log[-1].estimate) == pytest.approx(res.estimate, rel=1e-12)
    assert float(log[-1].residual) == pytest.approx(res.std_error, rel=1e-12)


@pytest.mark.parametrize("method", ["hutch++", "xtrace"])
def test_trace_sketch_stopped_early_is_hutchinson_on_the_sketch(method):
    M = spd()
    op, seen = recording(M)
    res = trace(
        op, method=method, num_matvecs=60, batch_size=5, seed=1, callback=stop_after(10, [])
    )
    Z = torch.cat(seen, dim=1)
    assert res.stopped and res.method == "hutchinson" and res.num_matvecs == 10
    truth = float(((Z * (M @ Z)).sum(dim=0)).mean())
    assert res.estimate == pytest.approx(truth, rel=1e-12)


@pytest.mark.parametrize("method", ["hutchinson", "hutch++", "xtrace"])
def test_trace_callback_that_never_stops_changes_nothing(method):
    op = with_spectrum(torch.linspace(0.1, 5.0, 30, dtype=torch.float64), seed=0)
    ref = trace(op, method=method, num_matvecs=24, seed=3)
    log, done = [], []
    res = trace(
        op,
        method=method,
        num_matvecs=24,
        seed=3,
        batch_size=4,
        callback=log.append,
        progress=lambda d, t, info: done.append((d, t)),
    )
    assert res.estimate == pytest.approx(ref.estimate, rel=1e-12)
    assert not res.stopped and res.method == method
    products = [it.products for it in log]
    assert products == sorted(products) and products[-1] == res.num_matvecs
    assert float(log[-1].estimate) == pytest.approx(res.estimate, rel=1e-12)
    assert done[-1] == (res.num_matvecs, res.num_matvecs)


def test_diagonal_stopped_is_the_mean_over_the_probes_done():
    M = spd()
    for method in ("hutchinson", "xdiag"):
        op, seen = recording(M)
        res = diagonal(
            op, method=method, num_matvecs=40, batch_size=4, seed=0, callback=stop_after(8, [])
        )
        Z = torch.cat(seen, dim=1)
        assert res.stopped and res.method == "hutchinson" and res.num_matvecs == 8
        torch.testing.assert_close(res.estimate, (Z * (M @ Z)).mean(dim=1))


def test_bad_callback_and_progress():
    op = with_spectrum(torch.arange(1.0, 6.0), seed=0)
    for fn in (trace, diagonal, power_iteration):
        with pytest.raises(TypeError, match="callback must be None or a callable"):
            fn(op, callback=3)
    with pytest.raises(TypeError, match="callback must be None or a callable"):
        cg(op, torch.ones(5, dtype=torch.float64), callback="print")
    with pytest.raises(TypeError, match="progress must be"):
        trace(op, progress="yes")


# ------------------------------------------------------------------------ power iteration
def test_power_iteration_stopped_reports_the_pairs_reached():
    op = with_spectrum(torch.tensor([10.0, 9.0, 1.0, 0.5, 0.1], dtype=torch.float64), seed=0)
    log = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # a stop is not a failure
        res = power_iteration(op, k=2, tol=1e-10, seed=0, callback=stop_after(4, log))
    assert res.stopped and not res.converged and res.num_matvecs == 4
    assert res.eigenvalues.shape == (1,)  # the first pair, unfinished
    assert [it.products for it in log] == [1, 2, 3, 4]
    assert all(it.info["pair"] == 0 for it in log)
    # the reported eigenvalue is the Rayleigh quotient of the returned vector
    x = res.eigenvectors[:, 0]
    assert float(res.eigenvalues[0]) == pytest.approx(float(x @ (op @ x)), rel=1e-12)
    ref = power_iteration(op, k=2, tol=1e-10, seed=0, max_iter=500)
    assert not ref.stopped and ref.converged


def test_power_iteration_progress_counts_products():
    op = with_spectrum(torch.tensor([4.0, 1.0, 0.5], dtype=torch.float64), seed=0)
    done = []
    res = power_iteration(op, k=1, tol=1e-8, seed=0, progress=lambda d, t, i: done.append((d, t)))
    assert done[-1] == (res.num_matvecs, 100) and len(done) == res.num_matvecs


# ------------------------------------------------------------------------------------- cg
def test_cg_stopped_is_the_iterate_of_that_many_steps():
    M = spd(30, seed=2)
    op = with_spectrum(torch.linalg.eigvalsh(M), seed=2)
    b = torch.ones(30, dtype=torch.float64)
    log = []
    res = cg(op, b, callback=lambda it: (log.append(it), it.iteration >= 3)[1])
    ref = cg(op, b, max_iter=3)
    assert res.stopped and not res.converged and res.num_iter == 3 and not ref.stopped
    torch.testing.assert_close(res.x, ref.x)
    assert [it.products for it in log] == [1, 2, 3]
    torch.testing.assert_close(log[-1].estimate, res.x)
    assert float(log[-1].residual) == pytest.approx(res.residual_norm, rel=1e-12)
    full = cg(op, b, callback=lambda it: None, progress=lambda d, t, i: None)
    assert full.converged and not full.stopped
    assert torch.allclose(op.matrix @ full.x, b, atol=1e-6)


# ---------------------------------------------------------------------------- spectral gap
def test_spectral_gap_passes_callback_and_progress_to_eigsh():
    from curvlab import spectral_gap

    eigs = torch.linspace(0.0, 1.0, 60, dtype=torch.float64)
    eigs[-1], eigs[-2] = 12.0, 6.0
    op = with_spectrum(eigs, seed=0)
    log, done = [], []
    gap = spectral_gap(op, seed=0, callback=log.append, progress=lambda d, t, i: done.append(d))
    assert gap.lambda1 == pytest.approx(12.0, rel=1e-9) and gap.ratio == pytest.approx(2.0)
    assert log and done and done[-1] <= gap.num_matvecs
    stopped = spectral_gap(op, seed=0, tol=1e-12, callback=lambda it: True)
    assert stopped.stopped and not stopped.converged and stopped.num_matvecs < gap.num_matvecs
    assert not gap.stopped and "stopped=True" in repr(stopped)
    with pytest.raises(TypeError, match="callback must be None or a callable"):
        spectral_gap(op, callback=1)


# ------------------------------------------------------------------- no host sync added
def test_callback_and_progress_add_no_host_sync():
    from host_syncs import count_syncs

    def syncs(fn):
        with count_syncs() as c:
            fn()
        return c["n"]

    g = torch.Generator().manual_seed(0)
    op = with_spectrum(torch.rand(120, generator=g, dtype=torch.float64), seed=0)
    quiet = {"callback": lambda it: None, "progress": lambda done, total, info: None}
    for fn in (trace, diagonal):
        plain = syncs(lambda fn=fn: fn(op, num_matvecs=24, seed=0, batch_size=4))
        assert syncs(lambda fn=fn: fn(op, num_matvecs=24, seed=0, batch_size=4, **quiet)) == plain
    plain = syncs(lambda: power_iteration(op, tol=0.0, max_iter=20, seed=0))
    assert syncs(lambda: power_iteration(op, tol=0.0, max_iter=20, seed=0, **quiet)) == plain
    b = torch.ones(120, dtype=torch.float64)
    plain = syncs(lambda: cg(op, b, max_iter=15))
    assert syncs(lambda: cg(op, b, max_iter=15, **quiet)) == plain
