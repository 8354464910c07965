"""Second-order optimizers under data parallelism (2 gloo processes) equal the full-batch step."""

import pytest
import torch
import torch.distributed as dist
from distributed_utils import run_distributed
from torch import nn

from curvlab.optim import SCRN, SSDH, AdaHessian, DampedNewton, NewtonCG, Sophia

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed missing")

DT = torch.float64


def problem():
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(16, 4, generator=gen, dtype=DT)
    y = torch.randint(0, 3, (16,), generator=gen)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).to(DT)
    return model, X, y


def make(name, params, group):
    kw = {"process_group": group}
    if name == "adahessian":
        return AdaHessian(params, lr=0.1, seed=3, **kw)
    if name == "sophia-g":
        return Sophia(params, estimator="gnb", update_each=1, seed=3, **kw)
    if name == "ssdh":
        return SSDH(params, seed=None, **kw)
    if name == "newton-cg":
        return NewtonCG(params, **kw)
    if name == "scrn-cauchy":  # ||g|| >= l^2 / rho on the three steps: Cauchy steps
        return SCRN(params, l=0.3, seed=3, **kw)
    if name.startswith("scrn"):  # ||g|| < 0.5 < l^2 / rho: the perturbed subsolvers
        return SCRN(params, subsolver=name.split("-")[1], seed=3, **kw)
    return DampedNewton(params, variant="gradreg", L=1.0, solver=name.split("-")[1], **kw)


NAMES = [
    "adahessian",
    "damped-dense",
    "damped-cg",
    "sophia-g",
    "ssdh",
    "newton-cg",
    "scrn-gd",
    "scrn-lanczos",
    "scrn-cauchy",
]
STEPS = 3


def run_steps(model, X, y, name, group=None, wrap=False):
    net = nn.parallel.DistributedDataParallel(model) if wrap else model
    opt = make(name, model.parameters(), group)
    losses = []

    def closure():
        out = net(X)
        loss = nn.functional.cross_entropy(out, y)
        return (loss, out) if name == "sophia-g" else loss

    for _ in range(STEPS):
        losses.append(opt.step(closure))
    return losses, [p.detach().clone() for p in model.parameters()]


def _worker(rank, world):
    out = {}
    for name in NAMES:
        model, X, y = problem()
        sl = slice(0, 8) if rank == 0 else slice(8, 16)
        out[name] = run_steps(
            model, X[sl], y[sl], name, dist.group.WORLD, wrap=name == "adahessian"
        )
    return out


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return run_distributed(_worker, tmp_path_factory.mktemp("dist_optim"))


@pytest.mark.parametrize("name", [n for n in NAMES if n != "ssdh"])
def test_data_parallel_steps_equal_full_batch_steps(results, name):
    model, X, y = problem()
    losses, params = run_steps(model, X, y, name)
    for r in results:
        r_losses, r_params = r[name]
        for a, b in zip(r_params, params):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
        for a, b in zip(r_losses, losses):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    # identical on every rank, bit for bit
    for a, b in zip(results[0][name][1], results[1][name][1]):
        assert torch.equal(a, b)


def test_seed_none_draws_the_same_probes_on_every_rank(results):
    for a, b in zip(results[0]["ssdh"][1], results[1]["ssdh"][1]):
        assert torch.equal(a, b)


def test_process_group_without_init_is_a_clear_error():
    model, X, y = problem()
    with pytest.raises(RuntimeError, match="not initialized"):
        AdaHessian(model.parameters(), process_group=object())


def _failing_worker(rank, world):
    """Rank 1's closure raises on the second step; rank 0 must not hang in a reduction."""
    from curvlab._distributed import RemoteRankError

    out = {}
    for name in ("adahessian", "newton-cg", "scrn-gd"):
        model, X, y = problem()
        opt = make(name, model.parameters(), dist.group.WORLD)
        fail = {"now": False}

        def closure(model=model, X=X, y=y, fail=fail):
            if rank == 1 and fail["now"]:
                raise ValueError("a bad batch on rank 1")
            return nn.functional.cross_entropy(model(X), y)

        opt.step(closure)
        fail["now"] = True
        try:
            opt.step(closure)
            out[name] = "no error"
        except RemoteRankError as err:
            out[name] = f"RemoteRankError: {err}"
        except ValueError as err:
            out[name] = f"ValueError: {err}"
    return out


def test_a_failing_rank_raises_everywhere_instead_of_hanging(tmp_path):
    """The data-parallel reductions carry the error flag of curvlab._distributed: the failing
    rank re-raises its error, the others raise RemoteRankError naming it (gloo's timeout is
    60 s: a hang would fail the test)."""
    r0, r1 = run_distributed(_failing_worker, tmp_path)
    for name in ("adahessian", "newton-cg", "scrn-gd"):
        assert r0[name].startswith("RemoteRankError") and "[1]" in r0[name], r0[name]
        assert r1[name] == "ValueError: a bad batch on rank 1"
