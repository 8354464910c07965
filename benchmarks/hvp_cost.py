"""Cost of one curvature-vector product relative to one full-data gradient (G).

Workload W1 of the benchmarks issue: MLP 64-128-128-10 (tanh) on 1,024 standardized digits in
8 batches of 128, float32. Prints a table and writes ``benchmarks/results/hvp_cost.json``.

Run: ``.venv/bin/python -m benchmarks.hvp_cost [--threads 2] [--repeats 7]``
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from torch import nn

import curvlab as cl


def digits_mlp(dtype=torch.float32):
    from sklearn.datasets import load_digits

    d = load_digits()
    X = torch.tensor(d.data[:1024], dtype=dtype)
    X = (X - X.mean(0)) / (X.std(0) + 1e-8)
    y = torch.tensor(d.target[:1024])
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(64, 128), nn.Tanh(), nn.Linear(128, 128), nn.Tanh(), nn.Linear(128, 10)
    ).to(dtype)
    batches = [(X[i : i + 128], y[i : i + 128]) for i in range(0, 1024, 128)]
    return model, nn.CrossEntropyLoss(), batches


def median_time(fn, repeats):
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "hvp_cost.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, loss_fn, data = digits_mlp()
    H = cl.HessianOperator(model, loss_fn, data)
    n = H.shape[0]
    gen = torch.Generator().manual_seed(0)
    v = torch.randn(n, generator=gen)
    V = torch.randn(n, 8, generator=gen)
    G = median_time(cl.EmpiricalRisk(model, loss_fn, data).loss_and_gradient, args.repeats)
    rows = []
    for name, cls in (("hessian", cl.HessianOperator), ("ggn", cl.GGNOperator)):
        for mode in ("rev-rev", "fwd-rev"):
            op = cls(model, loss_fn, data, mode=mode, check_deterministic=False)
            t1 = median_time(lambda op=op: op @ v, args.repeats)
            t8 = median_time(lambda op=op: op @ V, args.repeats)
            rows.append(
                {
                    "operator": name,
                    "mode": mode,
                    "one_product_G": t1 / G,
                    "per_column_k8_G": t8 / G / 8,
                }
            )
    print(f"W1 digits MLP, n = {n}, G = {G * 1e3:.2f} ms, {args.threads} threads")
    print(f"{'operator':10s} {'mode':8s} {'1 product':>10s} {'k=8, per column':>16s}")
    for r in rows:
        one, per = r["one_product_G"], r["per_column_k8_G"]
        print(f"{r['operator']:10s} {r['mode']:8s} {one:9.2f}G {per:15.2f}G")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "workload": "W1 MLP 64-128-128-10 tanh, 1024 digits, 8 batches of 128, float32",
                "gradient_seconds": G,
                "rows": rows,
                "machine": platform.platform(),
                "processor": platform.processor(),
                "threads": args.threads,
                "torch": torch.__version__,
                "curvlab": cl.__version__,
                "date": datetime.date.today().isoformat(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
