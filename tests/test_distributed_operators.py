"""Data-parallel operators on 2 gloo processes equal the single-process operator."""

import pytest
import torch
import torch.distributed as dist
from distributed_utils import run_distributed
from torch import nn

import curvlab as cl

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed missing")

DT = torch.float64
SHARDS = {0: [(0, 5), (5, 7)], 1: [(7, 16)]}  # unequal: rank 0 holds 7 samples, rank 1 holds 9


def problem():
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(16, 4, generator=gen, dtype=DT)
    y = torch.randint(0, 3, (16,), generator=gen)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).to(DT)
    return model, X, y


def _products(rank, world, cls_name, wrap_ddp):
    model, X, y = problem()
    if wrap_ddp:
        model = nn.parallel.DistributedDataParallel(model)
        group = None  # taken from the wrapper
    else:
        group = dist.group.WORLD
    data = [(X[a:b], y[a:b]) for a, b in SHARDS[rank]]
    cls = getattr(cl, cls_name)
    op = cls(model, nn.CrossEntropyLoss(), data, process_group=group)
    V = torch.randn(op.shape[0], 3, generator=torch.Generator().manual_seed(1), dtype=DT)
    loss, grad = op.loss_and_gradient()
    return {"num_data": op.num_data, "HV": op @ V, "loss": loss, "grad": grad}


def _bad_rank(rank, world):
    model, X, y = problem()
    Xr = X[:8].clone() if rank == 0 else X[8:].clone()
    yr = y[:8] if rank == 0 else y[8:]
    if rank == 1:
        Xr[2, 1] = float("nan")
    op = cl.HessianOperator(
        model,
        nn.CrossEntropyLoss(),
        [(Xr, yr)],
        process_group=dist.group.WORLD,
        check_deterministic=False,
    )
    try:
        op @ torch.ones(op.shape[0], dtype=DT)
    except Exception as err:  # report what each rank saw
        return {"type": type(err).__name__, "msg": str(err)}
    return {"type": None}


CASES = [("HessianOperator", False), ("GGNOperator", True), ("EmpiricalFisherOperator", False)]


def estimates(op):
    top = cl.eigsh(op, k=3, which="LA", seed=0)
    tr = cl.trace(op, num_matvecs=30, seed=0)
    sd = cl.spectral_density(op, num_probes=3, num_iter=12, seed=0)
    return {
        "eig": top.eigenvalues,
        "trace": torch.as_tensor(tr.estimate),
        "nodes": sd.nodes,
        "weights": sd.weights,
    }


def _estimators(rank, world):
    model, X, y = problem()
    data = [(X[a:b], y[a:b]) for a, b in SHARDS[rank]]
    op = cl.HessianOperator(model, nn.CrossEntropyLoss(), data, process_group=dist.group.WORLD)
    return estimates(op)


def _all_checks(rank, world):
    """One process launch for every check (spawning is the expensive part)."""
    out = {name: _products(rank, world, name, ddp) for name, ddp in CASES}
    out["bad"] = _bad_rank(rank, world)
    out["estimates"] = _estimators(rank, world)
    return out


@pytest.fixture(scope="module")
def distributed_results(tmp_path_factory):
    return run_distributed(_all_checks, tmp_path_factory.mktemp("dist"))


@pytest.mark.parametrize("cls_name,wrap_ddp", CASES)
def test_distributed_products_equal_single_process(distributed_results, cls_name, wrap_ddp):
    model, X, y = problem()
    op = getattr(cl, cls_name)(model, nn.CrossEntropyLoss(), [(X[:3], y[:3]), (X[3:], y[3:])])
    V = torch.randn(op.shape[0], 3, generator=torch.Generator().manual_seed(1), dtype=DT)
    ref = op @ V
    loss, grad = op.loss_and_gradient()
    results = [r[cls_name] for r in distributed_results]
    for r in results:
        assert r["num_data"] == 16
        torch.testing.assert_close(r["HV"], ref, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(r["loss"], loss)
        torch.testing.assert_close(r["grad"], grad)
    # every rank holds the same numbers, bit for bit
    assert torch.equal(results[0]["HV"], results[1]["HV"])


def test_a_failing_rank_fails_every_rank_without_hanging(distributed_results):
    bad = [r["bad"] for r in distributed_results]
    assert bad[1]["type"] == "ValueError" and "not finite on batch 0" in bad[1]["msg"]
    assert bad[0]["type"] == "RemoteRankError" and "rank(s) [1]" in bad[0]["msg"]


def test_process_group_without_init_is_a_clear_error():
    model, X, y = problem()
    with pytest.raises(RuntimeError, match="not initialized"):
        cl.HessianOperator(model, nn.CrossEntropyLoss(), [(X, y)], process_group=object())


def test_estimators_agree_on_every_rank_and_with_one_process(distributed_results):
    model, X, y = problem()
    ref = estimates(cl.HessianOperator(model, nn.CrossEntropyLoss(), [(X, y)]))
    ranks = [r["estimates"] for r in distributed_results]
    for key in ref:
        assert torch.equal(ranks[0][key], ranks[1][key]), key  # bit for bit across ranks
        torch.testing.assert_close(ranks[0][key], ref[key], rtol=1e-8, atol=1e-10)


def _landscape_and_risk(rank, world):
    model, X, y = problem()
    data = [(X[a:b], y[a:b]) for a, b in SHARDS[rank]]
    group = dist.group.WORLD
    d = torch.randn(
        sum(p.numel() for p in model.parameters()),
        dtype=DT,
        generator=torch.Generator().manual_seed(2),
    )
    acc = {"acc": lambda out, t: (out.argmax(1) == t).double().mean()}
    res = cl.landscape.line(
        model,
        nn.CrossEntropyLoss(),
        data,
        d,
        steps=5,
        metrics=acc,
        progress=False,
        process_group=group,
    )
    ev = cl.EmpiricalRisk(model, nn.CrossEntropyLoss(), data, process_group=group).evaluate(acc)
    return {
        "loss": res.loss,
        "acc": res.metrics["acc"],
        "num_data": res.num_data,
        "risk": ev.loss,
        "risk_acc": ev.metrics["acc"],
    }


def test_landscape_and_risk_over_a_process_group(tmp_path):
    """Each rank holds its shard (unequal sizes); the line is the full-data line everywhere."""
    results = run_distributed(_landscape_and_risk, tmp_path)
    model, X, y = problem()
    d = torch.randn(
        sum(p.numel() for p in model.parameters()),
        dtype=DT,
        generator=torch.Generator().manual_seed(2),
    )
    acc = {"acc": lambda out, t: (out.argmax(1) == t).double().mean()}
    ref = cl.landscape.line(
        model, nn.CrossEntropyLoss(), [(X, y)], d, steps=5, metrics=acc, progress=False
    )
    for r in results:
        assert r["num_data"] == 16
        torch.testing.assert_close(r["loss"], ref.loss, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(r["acc"], ref.metrics["acc"], rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(r["risk"], ref.loss[2], rtol=1e-12, atol=1e-14)
