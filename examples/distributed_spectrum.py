"""
Data-parallel Hessian spectrum with torch.distributed
=====================================================

Top Hessian eigenvalues and the spectral density of a digits MLP, with the data sharded over
processes. Each rank builds the operator on its own shard with ``process_group=``; every product
is summed over the ranks with one ``all_reduce``, so every rank holds the full-data product and,
drawing the same probes from the same seed, computes the same estimates bit for bit.

Launch on one machine with two CPU processes::

    torchrun --nproc_per_node=2 examples/distributed_spectrum.py

(on GPUs use ``--nproc_per_node=<gpus>``; the script picks ``nccl`` and one device per rank).
This script is not executed by the gallery build: it needs a launcher.
"""

import os

import torch
import torch.distributed as dist
from torch import nn

import curvlab as cl


def main():
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device(
        f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if backend == "nccl" else "cpu"
    )

    # every rank builds the same model (same seed) and takes every world-th sample
    data = cl.problems.digits(size=8, split="train")
    X, y = data.tensors
    X, y = X.flatten(1)[rank::world], y[rank::world]
    shard = [(X[i : i + 128], y[i : i + 128]) for i in range(0, len(X), 128)]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 10)).to(device)

    H = cl.HessianOperator(model, nn.CrossEntropyLoss(), shard, process_group=dist.group.WORLD)
    top = cl.eigsh(H, k=5, which="LA", seed=0)
    density = cl.spectral_density(H, num_probes=4, num_iter=60, seed=0)
    if rank == 0:
        print(f"{world} ranks, {H.num_data} samples in all, {H.num_local_data} on rank 0")
        print("top-5 eigenvalues:", top.eigenvalues.tolist())
        print("residuals:", top.residuals.tolist(), "matvecs:", top.num_matvecs)
        print("density nodes per probe:", tuple(density.nodes.shape))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
