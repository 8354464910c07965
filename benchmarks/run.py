"""Run curvlab and the peer libraries side by side on the benchmark workloads.

``python -m benchmarks.run [--quick] [--device cpu] [--threads 2]``

Every adapter runs in a process of its own (one per library and workload), one after the
other, in this one invocation; each measures its own unit ``G`` (one full-data gradient) so
that every figure is a ratio measured in the same process. References (float64) are computed
once per parameter set and cached. Results go to ``benchmarks/results/`` as JSON (with the
machine, versions and date) and ``latest.json``; :mod:`benchmarks.render` turns the latest
file into the tables and the chart of ``docs/benchmarks.rst``.

``--quick`` (what ``make bench`` runs) measures every library on W1-W4 after training
(products, the top eigenvalue, the spectral density, the AdaHessian step; W1 and W4 also the
top 10, W1 also trace, diagonal and memory) and curvlab against the oracle on W1 at
initialization, with fewer repeats; the default (full) run covers every task on W1-W4 in
both states. ``--quick --all-workloads`` runs the full plan with the quick settings. Every
eigenvalue setting runs over 5 seeds in both modes (``--set seeds=N`` changes it).

``--device cuda`` runs the same plan on a GPU (block Lanczos is added to curvlab's eigenvalue
ladders there); without CUDA it stops with an error before any worker starts.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .measure import machine_info

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"

ALL_TASKS = [
    "products",
    "top1",
    "top10",
    "trace",
    "density",
    "diagonal",
    "optimizer",
    "memory",
    "optimizer_memory",
]
INIT_TASKS = ["products", "top1", "top10", "memory"]
#: what the summary of the page compares on every workload
COMPARE = ["products", "top1", "density", "optimizer", "optimizer_memory"]

QUICK = {
    "plan": [
        # curvlab against the oracle on a clustered spectrum (the peers: in the full plan)
        ("W1", "init", ["top1", "top10"], ["curvlab"]),
        ("W1", "trained", ALL_TASKS),
        ("W2", "trained", COMPARE),
        ("W3", "trained", COMPARE),
        ("W4", "trained", [*COMPARE, "top10"]),
    ],
    "config": {
        "repeats": 3,
        "seeds": 5,
        "target_error": 1e-4,
        "top_k": 10,
        "trace_matvecs": 30,
        "trace_seeds": 3,
        "density_probes": 10,
        "density_steps": 100,
        "ladder_budget_G": 3000,
        "worker_timeout": 1800,
        "max_exact_n": 0,  # no unit-vector reference diagonal (W4: half an hour)
        # the peers' SLQ takes minutes on W2-W4; PyHessian's one probe is what the
        # target compares
        "skip": {"curvlinops": ["density"], "hessian_eigenthings": ["density"]},
    },
}

FULL = {
    "plan": [
        (w, s, ALL_TASKS if s == "trained" else INIT_TASKS)
        for w in ("W1", "W2", "W3", "W4")
        for s in ("init", "trained")
    ],
    "config": {
        "repeats": 7,
        "seeds": 5,
        "target_error": 1e-4,
        "top_k": 10,
        "trace_matvecs": 96,
        "trace_seeds": 5,
        "density_probes": 10,
        "density_steps": 100,
        "ladder_budget_G": 20000,
        "worker_timeout": 3600,
    },
}

#: the order the adapters run in (curvlab first)
ADAPTER_ORDER = [
    "curvlab",
    "pyhessian",
    "curvlinops",
    "hessian_eigenthings",
    "torch_optimizer",
    "backpack",
]


def _worker(args: list[str], env: dict, timeout: float, log: Path) -> tuple[dict | None, str]:
    """Run ``python -m benchmarks.worker ARGS``; returns (record, error text)."""
    out = log.with_suffix(".json")
    cmd = [sys.executable, "-m", "benchmarks.worker", *args, "--out", str(out)]
    try:
        with open(log, "w") as f:
            proc = subprocess.run(
                cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT, timeout=timeout
            )
    except subprocess.TimeoutExpired:
        msg = f"timed out after {timeout:.0f} s"
        if out.exists():  # the tasks finished before the timeout
            rec = json.loads(out.read_text())
            task = rec.pop("running", None)
            rec.setdefault("errors", {})[task or "?"] = f"{msg} during this task"
            return rec, ""
        return None, msg
    if proc.returncode != 0 or not out.exists():
        tail = log.read_text()[-1500:] if log.exists() else ""
        return None, f"exit code {proc.returncode}: {tail}"
    return json.loads(out.read_text()), ""


def check_device(device: str) -> None:
    """Refuse a device this machine does not have, before any worker starts."""
    import torch

    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise SystemExit(f"--device {device}: not a torch device ({err}).") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(
            f"--device {device}: torch {torch.__version__} sees no CUDA device here; run "
            "on a machine with a GPU and a CUDA build of torch, or use --device cpu."
        )
    if dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():
        raise SystemExit(f"--device {device}: only {torch.cuda.device_count()} CUDA devices.")
    if dev.type not in ("cpu", "cuda"):
        raise SystemExit(f"--device {device}: the benchmarks run on cpu or cuda.")


def _warn_if_oversubscribed(threads: int, verbose: bool) -> None:
    """On a machine busier than its cores, torch's OpenMP threads wait on each other: a
    float64 product of W1 took 12 s with 2 threads against 0.4 s with 1 on a 2-core machine
    at load 20. Say so (the run goes on: the figures are ratios, but slow and noisy)."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return
    cores = os.cpu_count() or 1
    if verbose and threads > 1 and load > cores:
        print(
            f"warning: load average {load:.1f} on {cores} cores; with --threads {threads} "
            "torch's threads wait on each other on a busy machine. Rerun on a quiet machine, "
            "or with --threads 1.",
            flush=True,
        )


def _adapter_ok(name: str) -> bool:
    from . import adapters

    try:
        return adapters.available(name)
    except Exception:  # noqa: BLE001
        return False


def run(
    *,
    quick: bool,
    device: str = "cpu",
    threads: int = 2,
    workloads: list[str] | None = None,
    states: list[str] | None = None,
    adapter_names: list[str] | None = None,
    out_dir: Path = RESULTS,
    config_overrides: dict | None = None,
    verbose: bool = True,
    all_workloads: bool = False,
) -> dict:
    """Run the plan and return the results dict (also written to ``out_dir``)."""
    from . import adapters as adapters_pkg

    check_device(device)
    _warn_if_oversubscribed(threads, verbose)
    spec = QUICK if quick else FULL
    config = {**spec["config"], **(config_overrides or {})}
    plan = [
        p
        for p in (FULL["plan"] if all_workloads else spec["plan"])
        if (workloads is None or p[0] in workloads) and (states is None or p[1] in states)
    ]
    names = [a for a in (adapter_names or ADAPTER_ORDER) if a in adapters_pkg.ADAPTERS]
    present = {a: _adapter_ok(a) for a in names}
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
        PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    )
    common = ["--device", device, "--threads", str(threads), "--config", json.dumps(config)]
    results: dict = {
        "schema": 1,
        "quick": quick,
        "all_workloads": all_workloads,
        "machine": machine_info(device, threads),
        "config": config,
        "adapters_present": present,
        "workloads": {},
    }
    t_start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="curvlab-bench-"))

    def say(msg):
        if verbose:
            print(f"[{time.perf_counter() - t_start:7.1f} s] {msg}", flush=True)

    for wname, state, tasks, *only in plan:
        key = f"{wname}/{state}"
        entry: dict = {"tasks": tasks, "adapters": {}, "errors": {}}
        results["workloads"][key] = entry
        say(f"{key}: reference (float64) and oracle product counts")
        oracle_k = [1] * ("top1" in tasks) + [int(config["top_k"])] * ("top10" in tasks)
        ref_common = [
            *common[:-1],
            json.dumps({**config, "oracle_k": oracle_k}),
        ]
        ref, err = _worker(
            ["--adapter", "reference", "--workload", wname, "--state", state, *ref_common],
            env,
            config["worker_timeout"] * 2,
            tmp / f"{wname}-{state}-reference.log",
        )
        entry["reference"] = ref
        if err:
            entry["errors"]["reference"] = err
        ref_path = tmp / f"{wname}-{state}-reference.json"
        for a in names:
            if only and a not in only[0]:
                continue
            if not present[a]:
                entry["adapters"][a] = {"skipped": "not installed"}
                continue
            mod = adapters_pkg.load(a)
            skip = config.get("skip", {}).get(a, [])
            mine = [t for t in tasks if t in mod.TASKS and t not in skip]
            if not mine:
                continue
            say(f"{key}: {a} ({', '.join(mine)})")
            args = ["--adapter", a, "--workload", wname, "--state", state, *common]
            args += ["--tasks", ",".join(mine)]
            if ref is not None:
                args += ["--reference", str(ref_path)]
            rec, err = _worker(
                args, env, config["worker_timeout"], tmp / f"{wname}-{state}-{a}.log"
            )
            if rec is None:
                entry["adapters"][a] = {"failed": err}
                say(f"  {a} failed: {err[-400:]}")
            else:
                entry["adapters"][a] = rec
                for t, e in rec.get("errors", {}).items():
                    say(f"  {a}.{t} raised: {e.strip().splitlines()[-1][:200]}")
    results["wall_seconds"] = time.perf_counter() - t_start
    results["logs"] = str(tmp)
    from .summary import evaluate_targets

    results["targets"] = evaluate_targets(results)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = results["machine"]["date"][:19].replace(":", "").replace("-", "")
    kind = ("quick" if quick else "full") + ("-all" if all_workloads and quick else "")
    path = out_dir / f"bench-{stamp}-{kind}-{device.split(':')[0]}.json"
    n = 2
    while path.exists():  # two runs started in the same second
        path = out_dir / f"bench-{stamp}-{kind}-{device.split(':')[0]}-{n}.json"
        n += 1
    text = json.dumps(results, indent=1, default=float)
    path.write_text(text)
    (out_dir / "latest.json").write_text(text)
    results["path"] = str(path)
    say(f"wrote {path} and {out_dir / 'latest.json'}")
    return results


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="W1 and W2 only, fewer repeats")
    ap.add_argument(
        "--all-workloads",
        action="store_true",
        help="the full plan (W1-W4, both states) with the settings of the chosen mode",
    )
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument("--workloads", default=None, help="comma-separated subset, e.g. W1,W3")
    ap.add_argument("--states", default=None, help="init, trained or both (default)")
    ap.add_argument("--adapters", default=None, help="comma-separated subset of the libraries")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting, e.g. --set repeats=1 --set ladder_budget_G=500",
    )
    ap.add_argument("--out-dir", default=str(RESULTS))
    ap.add_argument("--no-render", action="store_true", help="do not update docs/benchmarks.rst")
    args = ap.parse_args(argv)
    res = run(
        quick=args.quick,
        device=args.device,
        threads=args.threads,
        workloads=args.workloads.split(",") if args.workloads else None,
        states=args.states.split(",") if args.states else None,
        adapter_names=args.adapters.split(",") if args.adapters else None,
        out_dir=Path(args.out_dir),
        config_overrides={k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)},
        all_workloads=args.all_workloads,
    )
    from .summary import format_targets

    print(format_targets(res["targets"]))
    if not args.no_render:
        from .render import render

        render(Path(res["path"]))


if __name__ == "__main__":
    main()
