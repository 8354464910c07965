"""Products of the model-based operators make no host synchronization under deferred checks.

Host syncs are counted on CPU by patching the Tensor methods that copy a value to the host
(``item``, ``__bool__``, ``tolist``, ``cpu``, ``numpy``, ``__float__``, ``__int__``); on a GPU
each of them would stall the stream.
"""

from __future__ import annotations

import pytest
import torch
from host_syncs import count_syncs as count_host_syncs
from torch import nn

import curvlab as cl

DT = torch.float64


def problem(bad=False):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).to(DT)
    g = torch.Generator().manual_seed(0)
    X = torch.randn(12, 4, generator=g, dtype=DT)
    y = torch.randint(0, 3, (12,), generator=g)
    data = [(X[:5], y[:5]), (X[5:], y[5:])]
    return model, data


OPS = [
    ("hessian-cached", lambda m, d: cl.HessianOperator(m, nn.CrossEntropyLoss(), d)),
    (
        "hessian-uncached",
        lambda m, d: cl.HessianOperator(m, nn.CrossEntropyLoss(), d, graph_cache_mb=0),
    ),
    (
        "hessian-fwd-rev",
        lambda m, d: cl.HessianOperator(m, nn.CrossEntropyLoss(), d, mode="fwd-rev"),
    ),
    ("ggn", lambda m, d: cl.GGNOperator(m, nn.CrossEntropyLoss(), d)),
    ("mc-fisher", lambda m, d: cl.GGNOperator(m, nn.CrossEntropyLoss(), d, mc_samples=2, seed=0)),
    ("fisher", lambda m, d: cl.EmpiricalFisherOperator(m, nn.CrossEntropyLoss(), d)),
]


@pytest.mark.parametrize("name,make", OPS, ids=[n for n, _ in OPS])
def test_products_make_no_host_sync_under_deferred_checks(name, make):
    model, data = problem()
    op = make(model, data)
    V = torch.randn(op.shape[0], 3, dtype=DT, generator=torch.Generator().manual_seed(1))
    ref = op @ V
    shifted = op.shift(0.5)  # sums and scalings defer their parts too
    with op.deferred_checks(), shifted.deferred_checks():
        op @ V  # the first product under the context may build caches
        with count_host_syncs() as c:
            for _ in range(3):
                out = op @ V
                out2 = shifted @ V
        assert c["n"] == 0, f"{c['n']} host syncs in 6 products"
        flag = op.nonfinite_flag
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(out2, ref + 0.5 * V, rtol=1e-12, atol=1e-14)
    assert flag is not None and flag.dtype == torch.bool and not bool(flag)


def test_without_the_context_a_product_checks_at_once():
    model, data = problem()
    H = cl.HessianOperator(model, nn.CrossEntropyLoss(), data)
    v = torch.ones(H.shape[0], dtype=DT)
    with count_host_syncs() as c:
        H @ v
    assert c["n"] >= 1  # the immediate finiteness check of a user's product


def test_a_deferred_non_finite_product_raises_naming_the_batch():
    model, data = problem()
    X, y = data[1]
    bad = X.clone()
    bad[0, 0] = float("nan")
    H = cl.HessianOperator(
        model, nn.CrossEntropyLoss(), [data[0], (bad, y)], check_deterministic=False
    )
    v = torch.ones(H.shape[0], dtype=DT)
    with pytest.raises(ValueError, match="not finite on batch 1"):
        with H.deferred_checks():
            H @ v
            assert bool(H.nonfinite_flag)  # read by an estimator in its per-iteration transfer
            H @ v  # no error yet: deferred
    with pytest.raises(ValueError, match="not finite on batch 1"):
        H @ v  # outside the context: at once


@pytest.mark.parametrize("name,make", OPS[:4], ids=[n for n, _ in OPS[:4]])
def test_estimators_on_model_operators_make_one_sync_per_iteration(name, make):
    """The estimators enter deferred_checks(): a model-based product adds no sync, so a
    Lanczos run costs one transfer per step (its stop decision) as on a DenseOperator."""
    model, data = problem()
    op = make(model, data)
    op @ torch.ones(op.shape[0], dtype=DT)  # build caches outside the count
    with count_host_syncs() as a:
        cl.lanczos(op, 6, seed=0)
    with count_host_syncs() as b:
        cl.lanczos(op, 12, seed=0)
    assert b["n"] - a["n"] <= 6
    assert not op._defer_checks  # the context is left
    with count_host_syncs() as c:
        cl.eigsh(op, k=1, seed=0, tol=0.0, max_matvecs=6)
    with count_host_syncs() as d:
        cl.eigsh(op, k=1, seed=0, tol=0.0, max_matvecs=12)
    assert d["n"] - c["n"] <= 6
