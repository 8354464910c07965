"""Step time and peak memory of every curvlab optimizer on LeNet-5, side by side.

Issue 4's benchmark: one optimizer step (closure evaluation, gradient, curvature, update) on a
ReLU/max-pool LeNet-5 with 32x32 digits, batch 128, as a ratio to a plain SGD step and to
torch-optimizer's ``Adahessian`` (when installed), measured in one process with the
optimizers interleaved round-robin so that machine load affects them alike. Peak memory of a
step as a ratio to SGD's (torch profiler allocations on CPU).

Run: ``.venv/bin/python -m benchmarks.optim_steps [--repeats 15] [--threads 1]``; writes
``benchmarks/results/optim_steps.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from torch import nn

import curvlab.optim as co
from benchmarks.measure import machine_info, peak_memory, versions
from curvlab.problems import LeNet5, digits


def make_steppers(model: nn.Module, X, y):
    """name -> (optimizer factory, step function)."""
    loss_fn = nn.CrossEntropyLoss()

    def closure():
        return loss_fn(model(X), y)

    def torch_step(opt):
        opt.zero_grad(set_to_none=True)
        loss = closure()
        loss.backward()
        opt.step()

    def curv_step(opt):
        opt.step(closure)

    def legacy_step(opt):  # torch-optimizer's AdaHessian contract
        opt.zero_grad(set_to_none=True)
        loss = closure()
        loss.backward(create_graph=True)
        opt.step()

    params = model.parameters
    table = {
        "SGD": (lambda: torch.optim.SGD(params(), lr=0.01), torch_step),
        "Adam": (lambda: torch.optim.Adam(params(), lr=1e-3), torch_step),
        "AdaHessian": (lambda: co.AdaHessian(params()), curv_step),
        "AdaHessian (tropt preset)": (lambda: co.AdaHessian.torch_optimizer(params()), curv_step),
        "Sophia-H (k=1)": (lambda: co.Sophia(params(), update_each=1), curv_step),
        "Sophia-H (k=10)": (lambda: co.Sophia(params(), update_each=10), curv_step),
        "SSDH": (lambda: co.SSDH(params()), curv_step),
        "SADH": (lambda: co.SADH(params()), curv_step),
        "SSVP": (lambda: co.SSVP(params()), curv_step),
        "Apollo": (lambda: co.Apollo(params()), curv_step),
        "SCRN": (lambda: co.SCRN(params(), l=100.0, rho=1.0, inner_steps=10), curv_step),
        "DampedNewton (cg, 10 it.)": (
            lambda: co.DampedNewton(params(), variant="gradreg", L=1.0, cg_max_iter=10),
            curv_step,
        ),
        "NewtonCG": (lambda: co.NewtonCG(params()), curv_step),
    }
    try:
        import torch_optimizer

        table["torch-optimizer Adahessian"] = (
            lambda: torch_optimizer.Adahessian(params(), lr=0.15),
            legacy_step,
        )
    except ImportError:
        pass
    return table


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "optim_steps.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    ds = digits(size=32, channels=1, split="train")
    X, y = ds.tensors
    X, y = X[:128].float(), y[:128]
    torch.manual_seed(0)
    model = LeNet5("relu", in_channels=1).float()
    init = {k: v.clone() for k, v in model.state_dict().items()}
    table = make_steppers(model, X, y)
    opts, times, fails = {}, {name: [] for name in table}, {}
    for name, (make, _) in table.items():
        try:
            opts[name] = make()
        except Exception as err:  # report, do not hide
            fails[name] = f"{type(err).__name__}: {err}"
    for _ in range(2 + args.repeats):  # round-robin; the first two rounds are warm-up
        for name, opt in list(opts.items()):
            model.load_state_dict(init)
            step = table[name][1]
            t0 = time.perf_counter()
            try:
                step(opt)
            except Exception as err:
                fails[name] = f"{type(err).__name__}: {err}"
                del opts[name]
                continue
            times[name].append(time.perf_counter() - t0)
    med = {n: statistics.median(t[2:]) for n, t in times.items() if len(t) > 2}
    mem = {}
    for name, opt in opts.items():
        model.load_state_dict(init)
        mem[name] = peak_memory(lambda opt=opt, name=name: table[name][1](opt), torch.device("cpu"))
    sgd, ref = med["SGD"], med.get("torch-optimizer Adahessian")
    rows = []
    print(
        f"LeNet-5 (ReLU), 32x32 digits, batch 128, {args.threads} thread(s); SGD step "
        f"{sgd * 1e3:.1f} ms"
    )
    print(f"{'optimizer':28s} {'x SGD':>7s} {'x tropt AdaH':>12s} {'mem x SGD':>9s}")
    for name, t in med.items():
        m = mem.get(name)
        row = {
            "optimizer": name,
            "step_vs_sgd": t / sgd,
            "step_vs_torch_optimizer_adahessian": None if ref is None else t / ref,
            "peak_memory_vs_sgd": None if (m is None or not mem.get("SGD")) else m / mem["SGD"],
        }
        rows.append(row)
        r = "-" if ref is None else f"{t / ref:.2f}"
        mm = "-" if row["peak_memory_vs_sgd"] is None else f"{row['peak_memory_vs_sgd']:.2f}"
        print(f"{name:28s} {t / sgd:7.2f} {r:>12s} {mm:>9s}")
    for name, msg in fails.items():
        print(f"FAILED {name}: {msg}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "workload": "LeNet-5 relu/max-pool, 32x32 digits, batch 128, float32",
                "sgd_step_seconds": sgd,
                "rows": rows,
                "failures": fails,
                "repeats": args.repeats,
                "machine": machine_info("cpu", args.threads),
                "versions": versions(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
