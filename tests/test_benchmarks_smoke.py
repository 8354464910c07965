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
from benchmarks.render import BLOCKS, begin, end, render
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
    H = _dense_hessian(w)
    ev = torch.linalg.eigvalsh(H).flip(0)
    return {"top_eigenvalues": ev[:10].tolist(), "trace": float(H.trace())}


def _dense_hessian(w):
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
    return H


def _ctx(w, **config):
    cfg = {
        "repeats": 1,
        "seeds": 2,
        "trace_matvecs": 12,
        "trace_seeds": 2,
        "top_k": 3,
        "density_probes": 2,
        "density_steps": 10,
        **config,
    }
    return adapters.Context(w, cfg, Timer(torch.device("cpu"), 1, 0), 1e-3, _dense_reference(w))


def _check_eig(res, k):
    assert res["k"] == k and res["runs"] and res["seeds"] == [0, 1]
    default = next(r for r in res["runs"] if r.get("default"))
    assert default["G"] > 0 and math.isfinite(default["error_max"])
    assert len(default["seeds"]) == 2 and default["error"] <= default["error_max"]
    lo, hi = default["G_range"]
    assert lo <= default["G"] <= hi
    if res["fastest_reaching"] is not None:
        reached = next(r for r in res["runs"] if r["label"] == res["fastest_reaching"])
        assert reached["error_max"] <= 1e-4 and reached["G"] == res["fastest_G"]
    return default


def test_curvlab_adapter_products_and_top_eigenvalues():
    mod = adapters.load("curvlab")
    ctx = _ctx(_tiny())
    prod = mod.TASKS["products"](ctx)
    assert prod["hvp_plain"] > 0 and prod["hvp_many"] <= prod["hvp_reuse"]
    # the FLOP floor of a product: more than a gradient's matmuls, at most a few of them
    assert 1.0 < prod["flop_G"]["hvp_reuse"] < 4.0
    res = mod.TASKS["top1"](ctx)
    # curvlab's default and its call at the target tolerance reach the target on every
    # seed against the dense float64 eigenvalues
    assert _check_eig(res, 1)["error_max"] < 1e-4
    target = next(r for r in res["runs"] if r["label"] == res["target_label"])
    assert target["error_max"] < 1e-4 and target["matvecs"] >= 1
    _check_eig(mod.TASKS["top10"](ctx), 3)
    tr = mod.TASKS["trace"](ctx)
    assert set(tr["methods"]) == {"hutchinson", "hutch++", "xtrace"}
    for r in tr["methods"].values():
        assert "failed" not in r, r
        assert abs(r["estimates"][0] - ctx.reference["trace"]) < 5 * abs(ctx.reference["trace"])
    dens = mod.TASKS["density"](ctx)
    assert dens["G"] > 0 and dens["matvecs"] <= 2 * 10


def test_diagonal_difficulty_matches_the_dense_hessian(tmp_path):
    w = _tiny()
    ctx = _ctx(w)
    H = _dense_hessian(w)
    path = tmp_path / "diag.pt"
    torch.save(torch.diagonal(H).clone(), path)
    ctx.reference["diag_file"] = str(path)
    d = adapters.load("curvlab").TASKS["diagonal"](ctx)
    assert d["hutchinson"]["relative_error"] >= 0 and d["xdiag"]["G"] > 0
    s = d["spectrum"]
    frob2, diag2 = float((H**2).sum()), float((torch.diagonal(H) ** 2).sum())
    assert s["diagonal2"] == pytest.approx(diag2)
    assert s["frobenius2"] == pytest.approx(frob2, rel=0.5)  # 10 Rademacher probes
    assert 0 < s["top10_share"] <= 2.0


def test_oracle_lanczos_stops_at_the_first_accurate_step():
    from benchmarks.reference import oracle_lanczos

    gen = torch.Generator().manual_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(60, 60, generator=gen, dtype=torch.float64))
    ev = torch.cat([torch.tensor([10.0, 9.0, 8.5]), torch.linspace(0.1, 5.0, 57)]).double()
    A = Q @ torch.diag(ev) @ Q.T
    calls = []

    def mv(v):
        calls.append(1)
        return A @ v

    ref = sorted(ev.tolist(), reverse=True)
    for k, tol in ((1, 1e-4), (3, 1e-6)):
        calls.clear()
        m = oracle_lanczos(mv, 60, ref, k, tol, seed=1)
        assert m is not None and len(calls) == m
        # one step fewer is not accurate: the count is the first accurate step
        short = oracle_lanczos(mv, 60, ref, k, tol, seed=1, max_steps=m - 1)
        assert short is None
    assert oracle_lanczos(mv, 60, ref, 3, 1e-6, seed=1) > oracle_lanczos(
        mv, 60, ref, 1, 1e-4, seed=1
    )


def test_flop_count_of_a_linear_layer():
    from benchmarks.measure import flop_count

    lin = nn.Linear(8, 4)
    x = torch.randn(16, 8)
    assert flop_count(lambda: lin(x)) == 2 * 16 * 8 * 4
    ctx = _ctx(_tiny())
    assert ctx.flop_G(lambda: W.gradient(ctx.workload)) == pytest.approx(1.0)


def test_cuda_device_is_refused_cleanly_without_cuda():
    from benchmarks.run import check_device

    check_device("cpu")
    with pytest.raises(SystemExit, match="--device"):
        check_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match="no CUDA device"):
            check_device("cuda")


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
    prod = mod.TASKS["products"](ctx)
    assert prod["hvp"] > 0 and prod["flop_G"]["hvp"] > 1.0
    _check_eig(mod.TASKS["top1"](ctx), 1)
    tr = mod.TASKS["trace"](ctx)
    exact = ctx.reference["trace"]
    for r in tr["methods"].values():
        assert "failed" not in r, r
        assert all(math.isfinite(e) for e in r["estimates"])
        assert abs(r["estimates"][0] - exact) < 5 * abs(exact)


@pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph=True")
def test_adahessians_are_timed_round_robin_in_one_process():
    pytest.importorskip("torch_optimizer")
    ctx = _ctx(_tiny())
    cl = adapters.load("curvlab").TASKS["optimizer"](ctx)["steps_over_sgd"]
    assert cl["AdaHessian (torch-optimizer preset)"] > 0
    assert cl["torch-optimizer Adahessian"] > 0
    assert "optimizer" not in adapters.load("torch_optimizer").TASKS  # no second timing


# ------------------------------------------------------------------------------------------
# summary and rendering
# ------------------------------------------------------------------------------------------
def _eig(g_default, err_default, g_fast, mv_target=12, k=1):
    def run(label, G, err, mv, default=False):
        return {
            "label": label,
            "default": default,
            "G": G,
            "G_range": [G * 0.9, G * 1.1],
            "matvecs": mv,
            "matvecs_range": [mv - 1, mv + 1],
            "error": err / 2,
            "error_max": err,
            "reached": err <= 1e-4,
            "seeds": [],
        }

    runs = [run("default", g_default, err_default, 10, default=True)]
    if g_fast is not None:
        runs.append(run("tight", g_fast, 1e-6, mv_target))
    fast = [r for r in runs if r["reached"]]
    best = min(fast, key=lambda r: r["G"]) if fast else None
    return {
        "k": k,
        "seeds": [0, 1, 2, 3, 4],
        "runs": runs,
        "target_label": "tight" if g_fast is not None else None,
        "fastest_reaching": best and best["label"],
        "fastest_G": best and best["G"],
    }


def _fake_results():
    ads = {
        "curvlab": {
            "results": {
                "top1": _eig(20, 1e-7, 10),
                "top10": _eig(50, 1e-6, 45, mv_target=60, k=10),
                "products": {
                    "hvp_plain": 2.0,
                    "hvp_many": 1.2,
                    "hvp_reuse": 1.4,
                    "hvp_k8_per_column_reuse": 1.2,
                    "hvp": 2.0,
                    "ggn": 1.5,
                    "flop_G": {"hvp_reuse": 1.76, "hvp_k8_per_column_reuse": 1.76},
                },
                "memory": {"hvp_over_gradient": 2.5},
                "density": {"probes": 10, "steps": 100, "G": 1500.0, "one_probe_G": 150.0},
                "optimizer": {
                    "steps_over_sgd": {
                        "AdaHessian (torch-optimizer preset)": 3.0,
                        "torch-optimizer Adahessian": 3.3,
                    }
                },
                "diagonal": {
                    "matvecs": 30,
                    "hutchinson": {"G": 40.0, "relative_error": 2.0},
                    "xdiag": {"G": 41.0, "relative_error": 2.1},
                    "spectrum": {
                        "offdiag_over_diag": 120.0,
                        "top10_share": 0.8,
                        "frobenius2": 121.0,
                        "diagonal2": 1.0,
                        "hutchinson_predicted_error": 2.0,
                    },
                },
            }
        },
        "pyhessian": {
            "results": {
                "top1": _eig(90, 6e-3, None),
                "products": {"hvp": 3.0, "flop_G": {"hvp": 2.9}},
                "density": {"probes": 1, "steps": 100, "G": 300.0},
            }
        },
        "hessian_eigenthings": {"results": {"top1": _eig(5, 0.8, 40)}},
    }
    res = {
        "quick": True,
        "config": {"target_error": 1e-4, "top_k": 10, "seeds": 5},
        "workloads": {
            "W1/trained": {
                "adapters": ads,
                "reference": {"oracle": {"k1-tol0.0001": [10, 11, 9, 10, 12]}, "diag_file": "/x"},
            }
        },
        "machine": {
            "date": "2026-01-01T00:00:00",
            "cpu": "test",
            "threads": 2,
            "device": "cpu",
            "versions": {},
        },
        "logs": "/tmp/curvlab-bench-xyz",
    }
    res["targets"] = evaluate_targets(res)
    return res


def test_targets_are_the_ratios_of_the_issue():
    t = {x["id"]: x for x in _fake_results()["targets"]}
    assert t["top1-products-vs-oracle"]["worst"] == pytest.approx(12 / 10)
    assert t["top1-products-vs-oracle"]["met"] is False  # 1.2 > 1.15
    assert t["top1-accuracy"]["met"] and t["top1-accuracy"]["worst"] == pytest.approx(1e-6)
    assert t["top1-default-vs-best"]["worst"] == pytest.approx(20 / 10)
    assert t["top10-products-vs-oracle"]["met"] is None  # no oracle for k=10 here
    assert t["density-vs-pyhessian"]["worst"] == pytest.approx(1500 / 300)
    assert t["density-floor-all"]["worst"] == pytest.approx(1500 / (1000 * 1.4))
    assert t["adahessian-time"]["worst"] == pytest.approx(3.0 / 3.3) and t["adahessian-time"]["met"]
    assert t["top1-vs-fastest-peer"]["met"] is None  # the 1/3 target is a GPU target
    assert t["top1-vs-fastest-peer"]["worst"] == pytest.approx(10 / 40)
    assert t["hvp-vs-flop-floor"]["worst"] == pytest.approx(1.4 / 1.76)
    text = format_targets(list(t.values()))
    assert "MISSED" in text and "not measured" in text


def test_summary_table_compares_curvlab_with_each_peer():
    res = _fake_results()
    from benchmarks.render import eig_comparison, summary_rows

    c = eig_comparison(res, "W1/trained", "hessian_eigenthings", "top1")
    # curvlab's default reaches 1e-4 on every seed: its default time is compared
    assert c["speedup"] == pytest.approx(40 / 20) and c["curvlab_default"]
    assert eig_comparison(res, "W1/trained", "pyhessian", "top1")["speedup"] is None
    rows = {(r[0], r[1]): r[2:] for r in summary_rows(res)}
    assert rows[("PyHessian", "top eigenvalue")][0][0].startswith("never")
    assert rows[("hessian-eigenthings", "top eigenvalue")][0][0] == "2.00x"
    assert rows[("PyHessian", "spectral density")][0][0] == "2.00x"  # 300 / 150
    assert rows[("torch-optimizer", "AdaHessian step")][0][0] == "1.10x"
    assert len(rows[("PyHessian", "top eigenvalue")]) == 1  # W2-W4 not in this run


def test_render_writes_a_page_for_users(tmp_path):
    res = _fake_results()
    src = tmp_path / "results.json"
    src.write_text(json.dumps(res))
    doc = tmp_path / "bench.rst"
    doc.write_text(
        "Title\n=====\n\n"
        + "".join(f"{begin(b)}\nSTALE-{b}\n{end(b)}\n\nafter {b}\n\n" for b in BLOCKS)
    )
    png = tmp_path / "chart.png"
    render(src, doc, png, tmp_path / "bench_results.json")
    text = doc.read_text()
    assert "STALE" not in text and "after APPENDIX" in text and text.count(begin("SUMMARY")) == 1
    assert png.stat().st_size > 1000
    # results for users: no targets table, no local paths, no run failures
    assert "Targets" not in text and "/tmp" not in text and "/x" not in text
    assert "ailure" not in text and "exit code" not in text
    # the summary comes first, the chart after it, the raw tables in the appendix
    assert text.index("list-table:: curvlab against each peer") < text.index("chart.png")
    assert text.index("chart.png") < text.index("Products")
    assert "Correct by default" in text and "is still 24 times the diagonal" in text
    public = json.loads((tmp_path / "bench_results.json").read_text())
    assert (
        "logs" not in public and "diag_file" not in public["workloads"]["W1/trained"]["reference"]
    )
    assert public["targets"]  # the targets stay in the JSON


def test_page_in_the_docs_has_the_generated_blocks():
    from benchmarks.render import DOC

    text = DOC.read_text()
    for b in BLOCKS:
        assert text.count(begin(b)) == 1 and text.count(end(b)) == 1
    assert "/tmp/" not in text and "/root" not in text and "Targets of" not in text
    in_code = False
    for line in text.splitlines():  # preformatted text fits the content column
        if line.startswith(".. code-block::"):
            in_code = True
        elif in_code and line and not line.startswith(" "):
            in_code = False
        if in_code:
            assert len(line) <= 80, line


def test_merge_takes_each_workload_from_its_last_run():
    import copy

    from benchmarks.merge import merge
    from benchmarks.render import summary_block

    old = _fake_results()
    old["workloads"]["W2/trained"] = copy.deepcopy(old["workloads"]["W1/trained"])
    old["machine"]["git_commit"] = "aaa"
    new = copy.deepcopy(old)
    del new["workloads"]["W2/trained"]
    new["machine"].update(git_commit="bbb", date="2026-01-02T00:00:00")
    fast = new["workloads"]["W1/trained"]["adapters"]["curvlab"]["results"]["top1"]
    fast["runs"][1]["G"] = fast["fastest_G"] = 4.0
    res = merge([old, new])
    assert list(res["workloads"]) == ["W1/trained", "W2/trained"]
    assert [r["git_commit"] for r in res["runs"]] == ["aaa", "bbb"]
    assert res["runs"][0]["workloads"] == ["W2/trained"]
    assert res["workloads"]["W1/trained"]["run"] == 1
    speed = next(t for t in res["targets"] if t["id"] == "top1-vs-fastest-peer")
    assert sorted(r["value"] for r in speed["rows"]) == pytest.approx([4 / 40, 10 / 40])
    assert "2026-01-01 to 2026-01-02 (2 runs" in summary_block(res)[0]
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
