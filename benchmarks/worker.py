"""One adapter on one workload, in a process of its own (started by :mod:`benchmarks.run`).

``python -m benchmarks.worker --adapter curvlab --workload W1 --state trained --out r.json``

Measures ``G`` (one full-data gradient, plain autograd, median after warm-up) first, then
runs the requested tasks of the adapter; every figure is divided by this process's ``G``.
``--adapter reference`` computes (or loads) the float64 reference instead.
"""

from __future__ import annotations

import argparse
import json
import time
import traceback
from pathlib import Path

import torch

from .measure import Timer
from .workloads import build, gradient

MEMORY_TASKS = ("memory", "optimizer_memory")


def run_adapter(
    adapter: str,
    workload: str,
    state: str,
    *,
    tasks: list[str] | None = None,
    device: str = "cpu",
    config: dict | None = None,
    reference: dict | None = None,
    out: Path | None = None,
) -> dict:
    """Run ``tasks`` (default: all the adapter has) and return the JSON-ready record.

    With ``out``, the record is also written there after every task, so that a run stopped
    by a timeout keeps the tasks it finished.
    """
    from . import adapters

    config = dict(config or {})
    mod = adapters.load(adapter)
    w = build(workload, state, device=device)
    timer = Timer(w.device, repeats=int(config.get("repeats", 5)), warmup=1)
    G = timer.median(lambda: gradient(w), repeats=max(5, timer.repeats), warmup=2)
    ctx = adapters.Context(w, config, timer, G, reference)
    wanted = list(mod.TASKS) if tasks is None else [t for t in tasks if t in mod.TASKS]
    # memory measurements change malloc settings: after every timing
    wanted.sort(key=lambda t: t in MEMORY_TASKS)
    record = {
        "adapter": adapter,
        "workload": workload,
        "state": state,
        "num_params": w.num_params,
        "G_seconds": G,
        "results": {},
        "errors": {},
        "task_seconds": {},
    }
    for task in wanted:
        record["running"] = task
        if out is not None:
            Path(out).write_text(json.dumps(record, indent=1, default=float))
        t0 = time.perf_counter()
        try:
            record["results"][task] = mod.TASKS[task](ctx)
        except Exception:  # noqa: BLE001 - one failing task must not lose the others
            record["errors"][task] = traceback.format_exc(limit=6)[-2000:]
        record["task_seconds"][task] = time.perf_counter() - t0
    record.pop("running", None)
    record["G_end_seconds"] = timer.median(lambda: gradient(w), repeats=3, warmup=0)
    record["notes"] = ctx.notes
    return record


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--adapter", required=True)
    ap.add_argument("--workload", required=True)
    ap.add_argument("--state", default="init")
    ap.add_argument("--tasks", default=None, help="comma-separated; default all")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--config", default="{}", help="JSON settings")
    ap.add_argument("--reference", default=None, help="reference JSON file")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    config = json.loads(args.config)
    if args.adapter == "reference":
        from .reference import load_or_compute

        t0 = time.perf_counter()
        rec = load_or_compute(
            args.workload,
            args.state,
            k=int(config.get("top_k", 10)),
            max_exact_n=int(config.get("max_exact_n", 30_000)),
            oracle_k=[int(x) for x in config.get("oracle_k", [])],
            target=float(config.get("target_error", 1e-4)),
            seeds=range(int(config.get("seeds", 5))),
        )
        rec["wall_seconds"] = time.perf_counter() - t0
    else:
        reference = json.loads(Path(args.reference).read_text()) if args.reference else None
        tasks = args.tasks.split(",") if args.tasks else None
        rec = run_adapter(
            args.adapter,
            args.workload,
            args.state,
            tasks=tasks,
            device=args.device,
            config=config,
            reference=reference,
            out=Path(args.out),
        )
    Path(args.out).write_text(json.dumps(rec, indent=1, default=float))


if __name__ == "__main__":
    main()
