"""Smoke tests of the benchmark harness: workloads, measurement helpers, adapters, summary.

Peers are optional extras (the ``bench`` extra): their adapters are exercised only when the
package is installed (``pytest.importorskip``).
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from benchmarks import adapters
from benchmarks import workloads as W
from benchmarks.measure import Timer, peak_memory, relative_error
from benchmarks.render import BEGIN, END, render, tables
from benchmarks.summary import evaluate_targets, format_targets
from benchmarks.worker import run_adapter

pytest.importorskip("sklearn")


# ------------------------------------------------------------------------------------------
# workloads
# ------------------------------------------------------------------------------------------
EXPECTED = {"W1": (26122, 1024, 8), "W2": (61706, 512, 4), "W3": (25578, 256, 2)}


@pytest.mark.parametrize("name", ["W1", "W2", "W3", "W4"])
def test_workloads_build_deterministically(name):
    rng = torch.random.get_rng_state()
    a, b = W.build(name), W.build(name)
    assert torch.equal(torch.random.get_rng_state(), rng)  # global RNG untouched
    assert W.fingerprint(a.model) == W.fingerprint(b.model)
    assert all(torch.equal(x[0], y[0]) for x, y in zip(a.batches, b.batches))
    if name in EXPECTED:
        n, N, nb = EXPECTED[name]
        assert (a.num_params, a.num_data, len(a.batches)) == (n, N, nb)
    X, y = a.batches[0]
    assert a.model(X).shape == (y.shape[0], 10)
    assert a.dtype == torch.float32 and not a.model.training


def test_gradient_is_the_full_data_mean_gradient():
    w = W.build("W1", dtype=torch.float64)
    X = torch.cat([b[0] for b in w.batches])
    y = torch.cat([b[1] for b in w.batches])
    full = torch.autograd.grad(w.loss_fn(w.model(X), y), w.params)
    for g, f in zip(W.gradient(w), full):
        torch.testing.assert_close(g, f)


def test_trained_state_is_cached_and_differs_from_init(tmp_path, monkeypatch):
    monkeypatch.setenv("CURVLAB_BENCH_CACHE", str(tmp_path))
    init = W.build("W1", "init", dtype=torch.float64)
    first = W.build("W1", "trained", dtype=torch.float64)
    assert list(tmp_path.glob("W1-trained-*.pt"))
    second = W.build("W1", "trained", dtype=torch.float64)
    assert W.fingerprint(first.model) == W.fingerprint(second.model)
    assert W.fingerprint(first.model) != W.fingerprint(init.model)
    info = first.meta["training"]
    assert info["last_loss"] < info["first_loss"]


def test_build_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown workload"):
        W.build("W9")
    with pytest.raises(ValueError, match="unknown state"):
        W.build("W1", "half-trained")
    with pytest.raises(ValueError, match="unknown adapter"):
        adapters.load("nope")


# ------------------------------------------------------------------------------------------
# measurement helpers
# ------------------------------------------------------------------------------------------
def test_peak_memory_sees_a_known_allocation():
    def alloc():
        x = torch.ones(1_000_000)  # 4 MB, freed before the next one
        y = torch.ones(250_000)  # 1 MB
        return float(x[0] + y[0])

    peak = peak_memory(alloc, torch.device("cpu"))
    if peak is None:
        pytest.skip("no allocation profiler in this torch build")
    assert 5_000_000 <= peak < 6_000_000


def test_timer_median_and_relative_error():
    calls = []
    t = Timer(torch.device("cpu"), repeats=3, warmup=2)
    assert t.median(lambda: calls.append(1)) >= 0
    assert len(calls) == 5
    assert relative_error(1.1, 1.0) == pytest.approx(0.1)
    assert relative_error(0.0, 0.0) == 0.0 and math.isinf(relative_error(1.0, 0.0))


# ------------------------------------------------------------------------------------------
# adapters on a tiny workload with a dense reference
# ------------------------------------------------------------------------------------------
def _tiny():
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(48, 5, generator=gen)
    y = torch.randint(0, 3, (48,), generator=gen)
    state = torch.random.get_rng_state()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3)).eval()
    torch.random.set_rng_state(state)
    batches = [(X[:24], y[:24]), (X[24:], y[24:])]
    return W.Workload("tiny", "init", model, nn.CrossEntropyLoss(), batches)


def _dense_reference(w):
    from torch.func import functional_call, hessian

    names = [n for n, _ in w.model.named_parameters()]
    model64 = _tiny().model.double()
    X = torch.cat([b[0] for b in w.batches]).double()
    y = torch.cat([b[1] for b in w.batches])

    def loss(*ps):
        return w.loss_fn(functional_call(model64, dict(zip(names, ps)), (X,)), y)

    ps = tuple(p.detach().double() for p in model64.parameters())
    blocks = hessian(loss, argnums=tuple(range(len(ps))))(*ps)
    n = sum(p.numel() for p in ps)
    rows = [
        torch.cat([blocks[i][j].reshape(ps[i].numel(), -1) for j in range(len(ps))], 1)
        for i in range(len(ps))
    ]
    H = torch.cat(rows, 0)
    assert H.shape == (n, n)
    ev = torch.linalg.eigvalsh(H).flip(0)
    return {"top_eigenvalues": ev[:10].tolist(), "trace": float(H.trace())}


def _ctx(w, **config):
    cfg = {
        "repeats": 1,
        "solver_repeats": 1,
        "trace_matvecs": 12,
        "trace_seeds": 2,
        "top_k": 3,
        "density_probes": 2,
        "density_steps": 10,
        **config,
    }
    return adapters.Context(w, cfg, Timer(torch.device("cpu"), 1, 0), 1e-3, _dense_reference(w))


def _check_eig(res, k):
    assert res["k"] == k and res["runs"]
    default = next(r for r in res["runs"] if r.get("default"))
    assert default["G"] > 0 and math.isfinite(default["error"])
    if res["fastest_reaching"] is not None:
        reached = next(r for r in res["runs"] if r["label"] == res["fastest_reaching"])
        assert reached["error"] <= 1e-4 and reached["G"] == res["fastest_G"]


def test_curvlab_adapter_products_and_top_eigenvalues():
    mod = adapters.load("curvlab")
    ctx = _ctx(_tiny())
    prod = mod.TASKS["products"](ctx)
    assert prod["hvp_plain"] > 0 and prod["hvp_many"] <= prod["hvp_reuse"]
    res = mod.TASKS["top1"](ctx)
    _check_eig(res, 1)
    # curvlab's default reaches the target against the dense float64 eigenvalues
    default = next(r for r in res["runs"] if r.get("default"))
    assert default["error"] < 1e-4
    _check_eig(mod.TASKS["top10"](ctx), 3)
    tr = mod.TASKS["trace"](ctx)
    assert set(tr["methods"]) == {"hutchinson", "hutch++", "xtrace"}
    for r in tr["methods"].values():
        assert "failed" not in r, r
        assert abs(r["estimates"][0] - ctx.reference["trace"]) < 5 * abs(ctx.reference["trace"])
    dens = mod.TASKS["density"](ctx)
    assert dens["G"] > 0 and dens["matvecs"] <= 2 * 10
    diag = mod.TASKS["diagonal"](ctx)
    assert diag["hutchinson"]["G"] > 0 and diag["xdiag"]["G"] > 0


def test_run_adapter_records_G_and_memory():
    rec = run_adapter("curvlab", "W1", "init", tasks=["memory"], config={"repeats": 1})
    assert rec["G_seconds"] > 0 and not rec["errors"]
    mem = rec["results"]["memory"]
    if mem["hvp_over_gradient"] is not None:
        assert 1.0 < mem["hvp_over_gradient"] < 20.0


@pytest.mark.parametrize(
    "adapter, module",
    [
        ("pyhessian", "pyhessian"),
        ("curvlinops", "curvlinops"),
        ("hessian_eigenthings", "hessian_eigenthings"),
    ],
)
def test_peer_adapters_run_one_tiny_measurement(adapter, module):
    pytest.importorskip(module)
    mod = adapters.load(adapter)
    ctx = _ctx(_tiny(), ladder_budget_G=1e9)
    assert mod.TASKS["products"](ctx)["hvp"] > 0
    _check_eig(mod.TASKS["top1"](ctx), 1)
    tr = mod.TASKS["trace"](ctx)
    exact = ctx.reference["trace"]
    for r in tr["methods"].values():
        assert "failed" not in r, r
        assert all(math.isfinite(e) for e in r["estimates"])
        assert abs(r["estimates"][0] - exact) < 5 * abs(exact)
    if "density" in mod.TASKS:
        dens = mod.TASKS["density"](ctx)
        assert dens["G"] > 0, dens


def test_optimizer_adapters_run_one_step():
    pytest.importorskip("torch_optimizer")
    ctx = _ctx(_tiny())
    to = adapters.load("torch_optimizer").TASKS["optimizer"](ctx)
    cl = adapters.load("curvlab").TASKS["optimizer"](ctx)
    assert to["steps_over_sgd"]["Adahessian"] > 0
    assert cl["steps_over_sgd"]["AdaHessian (torch-optimizer preset)"] > 0


# ------------------------------------------------------------------------------------------
# summary and rendering
# ------------------------------------------------------------------------------------------
def _fake_results():
    def eig(g_default, err_default, g_fast):
        runs = [
            {
                "label": "default",
                "default": True,
                "G": g_default,
                "error": err_default,
                "matvecs": 10,
                "reached": err_default <= 1e-4,
            }
        ]
        if g_fast is not None:
            runs.append(
                {
                    "label": "tight",
                    "default": False,
                    "G": g_fast,
                    "error": 1e-6,
                    "matvecs": 20,
                    "reached": True,
                }
            )
        return {
            "k": 1,
            "runs": runs,
            "fastest_reaching": "tight" if g_fast else None,
            "fastest_G": g_fast,
        }

    ads = {
        "curvlab": {
            "results": {
                "top1": eig(20, 1e-7, 10),
                "products": {
                    "hvp_plain": 2.0,
                    "hvp_many": 1.2,
                    "hvp_reuse": 1.4,
                    "hvp_k8_per_column_reuse": 1.2,
                    "hvp": 2.0,
                },
                "memory": {"hvp_over_gradient": 2.5},
            }
        },
        "pyhessian": {"results": {"top1": eig(90, 6e-3, None), "products": {"hvp": 3.0}}},
        "hessian_eigenthings": {"results": {"top1": eig(5, 0.8, 40)}},
    }
    res = {
        "quick": True,
        "workloads": {"W1/init": {"adapters": ads}},
        "machine": {
            "date": "2026-01-01T00:00:00",
            "cpu": "test",
            "threads": 2,
            "device": "cpu",
            "versions": {},
        },
    }
    res["targets"] = evaluate_targets(res)
    return res


def test_targets_are_ratios_to_the_fastest_peer():
    t = {x["id"]: x for x in _fake_results()["targets"]}
    assert t["top1-speed"]["worst"] == pytest.approx(10 / 40) and t["top1-speed"]["met"]
    assert t["top1-vs-pyhessian"]["worst"] == pytest.approx(10 / 90)
    assert t["hvp"]["met"] and t["hvp-many"]["met"] and t["hvp-memory"]["met"]
    assert t["correct-by-default"]["worst"] == pytest.approx(1e-7)
    assert t["density"]["met"] is None  # not measured
    assert "not measured" in format_targets(list(t.values()))


def test_render_replaces_the_generated_block(tmp_path):
    res = _fake_results()
    lines = tables(res)
    assert any(line.startswith(".. list-table:: Targets") for line in lines)
    src = tmp_path / "results.json"
    src.write_text(json.dumps(res))
    doc = tmp_path / "bench.rst"
    doc.write_text(f"Title\n=====\n\n{BEGIN}\nSTALE-CONTENT\n{END}\n\nafter\n")
    png = tmp_path / "chart.png"
    render(src, doc, png)
    text = doc.read_text()
    assert "STALE-CONTENT" not in text and "after" in text and text.count(BEGIN) == 1
    assert png.stat().st_size > 1000


def test_merge_takes_each_workload_from_its_last_run():
    import copy

    from benchmarks.merge import merge

    old = _fake_results()
    old["workloads"]["W2/trained"] = copy.deepcopy(old["workloads"]["W1/init"])
    old["machine"]["git_commit"] = "aaa"
    new = copy.deepcopy(old)
    del new["workloads"]["W2/trained"]
    new["machine"].update(git_commit="bbb", date="2026-01-02T00:00:00")
    fast = new["workloads"]["W1/init"]["adapters"]["curvlab"]["results"]["top1"]
    fast["runs"][1]["G"] = fast["fastest_G"] = 4.0
    res = merge([old, new])
    assert list(res["workloads"]) == ["W1/init", "W2/trained"]
    assert [r["git_commit"] for r in res["runs"]] == ["aaa", "bbb"]
    assert res["runs"][0]["workloads"] == ["W2/trained"]
    assert res["workloads"]["W1/init"]["run"] == 1 and res["workloads"]["W2/trained"]["run"] == 0
    speed = next(t for t in res["targets"] if t["id"] == "top1-speed")
    assert sorted(r["value"] for r in speed["rows"]) == pytest.approx([4 / 40, 10 / 40])
    assert any("curvlab commit aaa: W2/trained" in line for line in tables(res))
    other = copy.deepcopy(new)
    other["machine"]["threads"] = 4
    with pytest.raises(ValueError, match="threads"):
        merge([old, other])


def test_data_contract_check_runs(capsys):
    from benchmarks import data_contract

    data_contract.main(["--quick", "--draws", "200"])
    out = capsys.readouterr().out
    assert "default check: ValueError" in out  # the shuffled loader is refused
    assert "EF/loop 1.0000" in out
