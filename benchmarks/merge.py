"""Merge benchmark results of several runs into one file, workload by workload.

``python -m benchmarks.merge OLD.json NEW.json [...] [--out PATH] [--no-render]``

A full run takes over an hour on 2 cores; after a change to the library one reruns the
workloads it affects (``python -m benchmarks.run --workloads W3 --states trained``) and merges:
each ``workload/state`` entry is taken from the last file that has it, whole, so that every
ratio still compares libraries measured side by side in one run. Each entry keeps the machine
record (date, commit, versions) of the run that measured it, and the page lists every run the
merged file draws from. The targets are evaluated again over the merged entries. Files from
different machines, devices, thread counts or settings are refused.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .summary import evaluate_targets

RESULTS = Path(__file__).resolve().parent / "results"

#: machine fields that must agree between the runs of one merged file
_SAME = ("cpu", "cpu_count", "threads", "device", "gpu")


def merge(runs: list[dict]) -> dict:
    """One results dict from ``runs`` (later runs override earlier ones per workload)."""
    if not runs:
        raise ValueError("nothing to merge: pass at least one results file.")
    first = runs[0]
    for r in runs[1:]:
        for key in _SAME:
            a, b = first["machine"].get(key), r["machine"].get(key)
            if a != b:
                raise ValueError(
                    f"runs differ in machine field {key!r} ({a!r} vs {b!r}): ratios measured on "
                    "different machines or settings do not belong in one table."
                )
        if r.get("config") != first.get("config"):
            raise ValueError("runs differ in their settings (config): rerun with the same mode.")
    out = {k: v for k, v in runs[-1].items() if k not in ("workloads", "targets", "path")}
    source = {}  # workload/state -> index of the last run that has it
    for i, r in enumerate(runs):
        for key in r["workloads"]:
            source[key] = i
    used = sorted(set(source.values()))
    out["runs"] = [
        {
            **{k: runs[i]["machine"].get(k) for k in ("date", "git_commit", "versions")},
            "load_average": runs[i]["machine"].get("load_average"),
            "interrupted": runs[i].get("interrupted"),
            "workloads": [key for key, j in source.items() if j == i],
        }
        for i in used
    ]
    # in the order of the first run that has each key (W1 before W2...)
    order = list(dict.fromkeys(key for r in runs for key in r["workloads"]))
    out["workloads"] = {
        key: {**runs[source[key]]["workloads"][key], "run": used.index(source[key])}
        for key in order
    }
    out["quick"] = all(r.get("quick") for r in runs)
    out["all_workloads"] = any(r.get("all_workloads") for r in runs)
    out.pop("interrupted", None)  # kept per run
    out["targets"] = evaluate_targets(out)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("files", nargs="+", help="results files, oldest first")
    ap.add_argument("--out", default=None, help="default: results/bench-<date>-merged-<dev>.json")
    ap.add_argument("--no-render", action="store_true", help="do not update docs/benchmarks.rst")
    args = ap.parse_args(argv)
    res = merge([json.loads(Path(f).read_text()) for f in args.files])
    stamp = res["machine"]["date"][:19].replace(":", "").replace("-", "")
    device = str(res["machine"].get("device", "cpu")).split(":")[0]
    path = Path(args.out) if args.out else RESULTS / f"bench-{stamp}-merged-{device}.json"
    text = json.dumps(res, indent=1, default=float)
    path.write_text(text)
    (RESULTS / "latest.json").write_text(text)
    print(f"wrote {path} and {RESULTS / 'latest.json'} ({len(res['runs'])} runs)")
    if not args.no_render:
        from .render import render

        render(path)


if __name__ == "__main__":
    main()
