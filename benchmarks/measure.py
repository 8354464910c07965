"""Timing, peak memory and machine description, shared by every adapter process."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import statistics
import subprocess
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

__all__ = [
    "Timer",
    "peak_memory",
    "machine_info",
    "versions",
    "relative_error",
    "flop_count",
    "PACKAGES",
]

#: distributions whose versions every result file records
PACKAGES = (
    "torch",
    "numpy",
    "scipy",
    "curvlab",
    "PyHessian",
    "curvlinops-for-pytorch",
    "hessian-eigenthings",
    "torch-optimizer",
    "backpack-for-pytorch",
)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Timer:
    """Median wall time of a callable after a warm-up, on one device.

    Parameters
    ----------
    device
        Synchronized before and after each call (CUDA), so that times are complete.
    repeats
        Number of timed calls (the median is reported).
    warmup
        Untimed calls first.
    """

    def __init__(self, device: torch.device, repeats: int = 5, warmup: int = 1):
        self.device = torch.device(device)
        self.repeats = max(1, int(repeats))
        self.warmup = max(0, int(warmup))

    def once(self, fn: Callable[[], object]) -> tuple[float, object]:
        """Time one call; returns ``(seconds, result)``."""
        _sync(self.device)
        t0 = time.perf_counter()
        out = fn()
        _sync(self.device)
        return time.perf_counter() - t0, out

    def median(
        self, fn: Callable[[], object], repeats: int | None = None, warmup: int | None = None
    ) -> float:
        """Median seconds of ``repeats`` calls after ``warmup`` untimed ones."""
        for _ in range(self.warmup if warmup is None else warmup):
            fn()
        times = [self.once(fn)[0] for _ in range(self.repeats if repeats is None else repeats)]
        return statistics.median(times)

    def interleaved(
        self, fns: dict[str, Callable[[], object]], repeats: int | None = None
    ) -> dict[str, float]:
        """Median seconds of each callable, timed round-robin (one call of each per round)
        after one warm-up round, so that drifts in the machine's load hit them alike."""
        for fn in fns.values():
            for _ in range(max(1, self.warmup)):
                fn()
        times: dict[str, list[float]] = {name: [] for name in fns}
        for _ in range(self.repeats if repeats is None else repeats):
            for name, fn in fns.items():
                times[name].append(self.once(fn)[0])
        return {name: statistics.median(t) for name, t in times.items()}


def flop_count(fn: Callable[[], object]) -> int | None:
    """Matrix-multiply, convolution and attention FLOPs of one call of ``fn``, forward and
    backward, as ``torch.utils.flop_counter.FlopCounterMode`` counts them (elementwise
    operations are not counted: this is the floor of the dense work). ``None`` where the
    counter is unavailable."""
    try:
        from torch.utils.flop_counter import FlopCounterMode
    except ImportError:
        return None
    with FlopCounterMode(display=False) as counter:
        out = fn()
        del out
    return int(counter.get_total_flops())


# ------------------------------------------------------------------------------------------
# peak memory
# ------------------------------------------------------------------------------------------
def _profiled_peak(fn: Callable[[], object]) -> int | None:
    """Peak of the running sum of the allocations and frees torch's profiler records."""
    from torch.profiler import ProfilerActivity, profile

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            out = fn()
            del out
    try:
        events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
        events.sort(key=lambda e: e.start_ns())
        sizes = [int(e.nbytes()) for e in events if str(e.device_type()).endswith("CPU")]
    except AttributeError:  # a torch without these accessors
        return None
    cur = peak = 0
    for b in sizes:
        cur += b
        peak = max(peak, cur)
    return peak


def peak_memory(fn: Callable[[], object], device: torch.device) -> int | None:
    """Peak memory (bytes) that ``fn`` allocates above what was live before it.

    CUDA: ``torch.cuda.max_memory_allocated``. CPU: the peak of the running sum of the
    tensor allocations and frees recorded by ``torch.profiler`` (``profile_memory=True``),
    exact at the allocator level and independent of malloc's caching. ``None`` where neither
    is available. ``fn`` is called once untimed first (lazy initializations do not count).
    """
    device = torch.device(device)
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        out = fn()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - base
        del out
        return int(peak)
    return _profiled_peak(fn)


# ------------------------------------------------------------------------------------------
# machine and versions
# ------------------------------------------------------------------------------------------
def versions() -> dict[str, str | None]:
    """Installed versions of torch, curvlab and the peer libraries (``None``: absent)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def machine_info(device: str, threads: int) -> dict:
    """What a reader needs to compare result files: machine, device, threads, date."""
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "device": device,
        "git_commit": _git_commit(),
        "versions": versions(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    try:
        info["load_average"] = list(os.getloadavg())
    except OSError:
        pass
    return info


def relative_error(estimate: float, reference: float) -> float:
    """``|estimate - reference| / |reference|`` (``inf`` for a zero reference)."""
    if reference == 0:
        return float("inf") if estimate != 0 else 0.0
    return abs(float(estimate) - float(reference)) / abs(float(reference))
