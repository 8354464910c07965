"""Seeds and generators: the one place that turns a user's ``seed`` into a generator.

Every random routine of curvlab takes ``seed``: an int, a :class:`torch.Generator` or ``None``.
Nothing draws from torch's global RNG. Two policies exist for a generator passed by the user:

- ``share=False`` (estimators, operators): one integer seed is drawn from it and a fresh
  generator is made from that integer, which is returned so that the call can be reproduced
  with ``seed=<that int>``.
- ``share=True`` (optimizers, problem builders, landscapes): the generator itself is used, so
  its stream advances across calls, as the user handed it over.

``None`` draws a fresh seed from the operating system (never from the global RNG).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from numbers import Integral

import torch
from torch import Tensor

__all__ = [
    "Seed",
    "fresh_seed",
    "check_seed",
    "draw_seed",
    "make_generator",
    "rademacher_like",
    "randn_flat",
]

Seed = int | torch.Generator | None

#: seeds are kept below 2**62 so that they fit any signed 64-bit field
_SEED_BITS = 62


def fresh_seed() -> int:
    """A non-deterministic seed from the operating system's entropy (not the global RNG)."""
    return int.from_bytes(os.urandom(8), "little") >> (64 - _SEED_BITS)


def check_seed(seed: Seed, *, allow_none: bool = True) -> Seed:
    """Return ``seed``; raise a clear error unless it is ``None``, a non-negative int (numpy
    integers included) or a Generator.

    A wrong type is a :class:`TypeError`, a negative int a :class:`ValueError`. With
    ``allow_none=False`` (the problem builders, which are always seeded) ``None`` is a
    :class:`TypeError` too.
    """
    if isinstance(seed, torch.Generator) or (seed is None and allow_none):
        return seed
    if seed is None or isinstance(seed, bool) or not isinstance(seed, Integral):
        expected = (
            "an int, a torch.Generator or None" if allow_none else "an int or a torch.Generator"
        )
        raise TypeError(f"seed must be {expected}, got {type(seed).__name__}.")
    if int(seed) < 0:
        raise ValueError(f"seed must be a non-negative integer, got {int(seed)}.")
    return seed


def draw_seed(generator: torch.Generator) -> int:
    """One integer seed drawn from ``generator`` (advances it by one draw)."""
    return int(
        torch.randint(0, 2**_SEED_BITS, (1,), generator=generator, device=generator.device).item()
    )


def make_generator(
    seed: Seed, device: torch.device | str = "cpu", *, share: bool = False
) -> tuple[torch.Generator, int | None]:
    """A generator for ``seed`` on ``device`` and the integer seed that reproduces it.

    Parameters
    ----------
    seed
        An int, a :class:`torch.Generator` or ``None`` (a fresh seed from the OS).
    device
        Device of the new generator.
    share
        For a Generator ``seed``: ``True`` returns it unchanged (with ``None`` as the integer
        seed, since its state is not one integer); ``False`` draws an integer seed from it
        and returns a new generator made from that integer.

    Returns
    -------
    (torch.Generator, int or None)

    Examples
    --------
    >>> import torch
    >>> g, s = make_generator(3)
    >>> s, torch.equal(torch.rand(2, generator=g), torch.rand(2, generator=make_generator(3)[0]))
    (3, True)
    """
    check_seed(seed)
    if isinstance(seed, torch.Generator):
        if share:
            return seed, None
        seed = draw_seed(seed)
    elif seed is None:
        seed = fresh_seed()
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed))
    return gen, int(seed)


def rademacher_like(
    params: Sequence[Tensor], generator: torch.Generator, num: int | None = None
) -> list[Tensor]:
    """Real Rademacher probes (+-1, each with probability 1/2) shaped like ``params``.

    One flat draw on the generator's device is split over the parameters (so the probes do
    not depend on how the parameters are grouped), then moved to each parameter's device
    and dtype. ``num`` probes give tensors of shape ``(num, *p.shape)``.

    Examples
    --------
    >>> import torch
    >>> z = rademacher_like([torch.empty(2, 3)], torch.Generator().manual_seed(0))[0]
    >>> z.shape, bool(((z == 1) | (z == -1)).all())
    (torch.Size([2, 3]), True)
    """
    n = sum(p.numel() for p in params)
    shape = (n,) if num is None else (num, n)
    dev = generator.device
    flat = torch.randint(0, 2, shape, generator=generator, device=dev, dtype=torch.int8)
    sizes = [p.numel() for p in params]
    out = []
    for chunk, p in zip(torch.split(flat, sizes, dim=-1), params):
        v = chunk.to(device=p.device, dtype=p.dtype).mul_(2).sub_(1)
        out.append(v.view(p.shape) if num is None else v.view(num, *p.shape))
    return out


def randn_flat(n: int, generator: torch.Generator, like: Tensor) -> Tensor:
    """``n`` standard normal draws from ``generator`` (on its device), in the dtype and on the
    device of ``like``.

    Examples
    --------
    >>> import torch
    >>> randn_flat(3, torch.Generator().manual_seed(0), torch.zeros(1, dtype=torch.float64)).dtype
    torch.float64
    """
    z = torch.randn(n, generator=generator, device=generator.device, dtype=like.dtype)
    return z.to(like.device)
