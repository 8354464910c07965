"""Host synchronizations per product and per solver iteration, counted on CPU (issue 17).

Every way a tensor's value reaches the host is patched (``item``, ``__bool__``, ``tolist``,
``cpu``, ``numpy``, ``__float__``, ``__int__``) and counted; each estimator runs for N and
2N iterations on a DenseOperator and may make at most one more transfer per extra iteration.
A DenseOperator product makes none. On CUDA these are the calls that wait for the device.
"""

import pytest
import torch
from host_syncs import count_syncs
from linalg_helpers import with_spectrum

import curvlab as cl


def _op(n=200, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    e = torch.rand(n, generator=g, dtype=torch.float64)  # slow convergence: no early stop
    return with_spectrum(e, seed=seed, dtype=dtype)


def syncs(fn):
    with count_syncs() as c:
        fn()
    return c["n"]


def test_counter_sees_the_patched_calls():
    t = torch.ones(2)
    assert syncs(lambda: (float(t[0]), t.tolist(), bool(t[0]), t.sum().item())) == 4


def test_dense_product_makes_no_sync():
    op = _op()
    V = torch.randn(200, 3, dtype=torch.float64)
    assert syncs(lambda: op @ V) == 0
    assert syncs(lambda: op @ V[:, 0]) == 0


@pytest.mark.parametrize("N", [10, 20])
def test_lanczos_one_sync_per_step(N):
    op = _op()
    a = syncs(lambda: cl.lanczos(op, N, seed=0))
    b = syncs(lambda: cl.lanczos(op, 2 * N, seed=0))
    assert b - a <= N
    # and exactly one per step (the stop decision), not zero by accident of the counter
    assert b - a == N


def test_spectral_density_one_sync_per_step_whatever_the_probes():
    op = _op()
    a = syncs(lambda: cl.spectral_density(op, num_probes=10, num_iter=15, seed=0))
    b = syncs(lambda: cl.spectral_density(op, num_probes=10, num_iter=30, seed=0))
    assert b - a <= 15
    c = syncs(lambda: cl.spectral_density(op, num_probes=2, num_iter=30, seed=0))
    assert b == c  # no Python loop over probes that reads values back


@pytest.mark.parametrize("k,block", [(1, None), (3, None), (1, 4), (3, 8)])
def test_eigsh_at_most_one_sync_per_iteration(k, block):
    op = _op(n=400)
    b = block or 1
    runs = {}
    for iters in (8, 16):
        kw = dict(k=k, seed=0, tol=0.0, max_matvecs=iters * b, block_size=block, ncv=200)
        out = []
        runs[iters] = syncs(lambda kw=kw, out=out: out.append(cl.eigsh(op, **kw)))
        assert out[0].num_matvecs == iters * b
    assert runs[16] - runs[8] <= 8


def test_eigsh_with_restarts_at_most_one_sync_per_iteration():
    op = _op(n=400)
    counts = [
        syncs(lambda m=m: cl.eigsh(op, k=2, seed=0, tol=0.0, max_matvecs=m, ncv=12))
        for m in (40, 80)
    ]
    assert counts[1] - counts[0] <= 40


def test_power_iteration_one_sync_per_iteration():
    op = _op()
    a = syncs(lambda: cl.power_iteration(op, k=1, tol=0.0, max_iter=10, seed=0))
    b = syncs(lambda: cl.power_iteration(op, k=1, tol=0.0, max_iter=20, seed=0))
    assert b - a <= 10


def test_cg_one_sync_per_iteration():
    op = _op()
    rhs = torch.ones(200, dtype=torch.float64)
    a = syncs(lambda: cl.cg(op, rhs, tol=1e-30, max_iter=10, damping=1.0))
    b = syncs(lambda: cl.cg(op, rhs, tol=1e-30, max_iter=20, damping=1.0))
    assert b - a <= 10


@pytest.mark.parametrize("method", ["hutchinson", "hutch++", "xtrace"])
def test_trace_syncs_do_not_grow_with_the_products(method):
    op = _op()
    # batch_size=4: the products run in 6 and 12 chunks; no chunk reads a value back
    a = syncs(lambda: cl.trace(op, num_matvecs=24, method=method, seed=0, batch_size=4))
    b = syncs(lambda: cl.trace(op, num_matvecs=48, method=method, seed=0, batch_size=4))
    assert b == a


def test_diagonal_syncs_do_not_grow_with_the_products():
    op = _op()
    a = syncs(lambda: cl.diagonal(op, num_matvecs=24, seed=0, batch_size=4))
    b = syncs(lambda: cl.diagonal(op, num_matvecs=48, seed=0, batch_size=4))
    assert b == a


# ------------------------------------------------------------ the operator's non-finite flag
class FlaggedOperator:
    """An OperatorLike with the device flag of the model-based operators: ``nonfinite_flag``
    (0-dim bool tensor) and ``raise_nonfinite()``; its products never sync."""

    def __init__(self, A, bad_after=None):
        self.A, self.shape, self.dtype, self.device = A, A.shape, A.dtype, A.device
        self.calls, self.bad_after = 0, bad_after
        self.reads = 0
        self._flag = torch.zeros((), dtype=torch.bool)

    @property
    def nonfinite_flag(self):
        self.reads += 1
        return self._flag

    def raise_nonfinite(self):
        raise FloatingPointError("flagged by the operator")

    def __matmul__(self, V):
        self.calls += 1
        if self.bad_after is not None and self.calls > self.bad_after:
            self._flag = torch.ones((), dtype=torch.bool)  # values stay finite: only the flag
        return self.A @ V


ESTIMATORS = {
    "eigsh": lambda op: cl.eigsh(op, k=2, seed=0),
    "lanczos": lambda op: cl.lanczos(op, 10, seed=0),
    "spectral_density": lambda op: cl.spectral_density(op, num_probes=3, num_iter=10, seed=0),
    "power_iteration": lambda op: cl.power_iteration(op, seed=0, max_iter=20),
    "trace": lambda op: cl.trace(op, num_matvecs=30, seed=0),
    "diagonal": lambda op: cl.diagonal(op, num_matvecs=30, seed=0),
    "cg": lambda op: cl.cg(op, torch.ones(op.shape[0], dtype=op.dtype), damping=1.0),
}


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_estimators_read_the_operators_flag(name):
    A = _op(n=60).matrix
    ok = FlaggedOperator(A)
    ESTIMATORS[name](ok)  # the flag stays clear: no error
    assert ok.reads >= 1
    with pytest.raises(FloatingPointError, match="flagged"):
        # flagged from the third product on (the first for the one-block trace estimators)
        ESTIMATORS[name](FlaggedOperator(A, bad_after=0 if name in ("trace", "diagonal") else 2))
