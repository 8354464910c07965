"""torch.distributed glue: which group to reduce over, and reductions that cannot hang.

Every rank iterates over its own shard of the data; products, losses, gradients and sample
counts are summed over the group with one ``all_reduce`` each. A rank that fails (a bad batch,
a NaN) must not leave the others blocked in a collective: every reduction first reduces an
error flag, so that all ranks raise together.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn


class RemoteRankError(RuntimeError):
    """Raised on the healthy ranks when another rank of the group failed."""


def unwrap_ddp(model: nn.Module) -> nn.Module:
    """The module inside a ``DistributedDataParallel`` wrapper (its hooks do not see double
    backward, and curvlab reduces explicitly), or ``model`` itself."""
    from torch.nn.parallel import DistributedDataParallel

    return model.module if isinstance(model, DistributedDataParallel) else model


def resolve_group(model: nn.Module, process_group):
    """``None`` stays single-process unless ``model`` is a DDP wrapper (then its group)."""
    from torch.nn.parallel import DistributedDataParallel

    if process_group is not None:
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError(
                "process_group was given but torch.distributed is not initialized: call "
                "torch.distributed.init_process_group first (e.g. under torchrun)."
            )
        return process_group
    if isinstance(model, DistributedDataParallel):
        return model.process_group
    return None


def world_size(group) -> int:
    return 1 if group is None else dist.get_world_size(group)


def all_reduce_checked(tensors: list[Tensor], error: BaseException | None, group) -> None:
    """Sum ``tensors`` in place over ``group``; raise everywhere if any rank had ``error``.

    The failing rank re-raises its own exception; the others raise :class:`RemoteRankError`
    naming the failing ranks. With ``group=None`` only re-raises ``error``.
    """
    if group is None:
        if error is not None:
            raise error
        return
    device = tensors[0].device if tensors else torch.device("cpu")
    rank = dist.get_rank(group)
    flags = torch.zeros(dist.get_world_size(group), device=device)
    if error is not None:
        flags[rank] = 1.0
    dist.all_reduce(flags, group=group)
    if flags.any():
        if error is not None:
            raise error
        bad = [int(i) for i in torch.nonzero(flags).flatten().tolist()]
        raise RemoteRankError(f"rank(s) {bad} of the process group failed; see their error.")
    for t in tensors:
        dist.all_reduce(t, group=group)
