"""Run a function on 2 CPU processes with the gloo backend (loopback, bounded time)."""

from __future__ import annotations

import datetime
import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank, world, port, fn, outdir, args):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=60)
    )
    try:
        result = fn(rank, world, *args)
        torch.save(result, os.path.join(outdir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def run_distributed(fn, outdir, *args, world: int = 2):
    """Run ``fn(rank, world, *args)`` on ``world`` processes; return the per-rank results.

    ``fn`` must be importable (module level). Exceptions in a child propagate as
    ``torch.multiprocessing.ProcessRaisedException``.
    """
    mp.start_processes(
        _entry,
        args=(world, free_port(), fn, str(outdir), args),
        nprocs=world,
        join=True,
        start_method="spawn",
    )
    return [torch.load(os.path.join(outdir, f"rank{r}.pt")) for r in range(world)]
