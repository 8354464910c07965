"""Study E's synthetic task: a sum of sinusoids on a uniform grid, fit by a ReLU MLP."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.data import TensorDataset

from .._checks import check_int
from .._public import public_dir
from .._random import check_seed, make_generator
from .mlp import MLP
from .problem import Problem, Seed, loaders, seeded_init

__all__ = ["sinusoids", "SINUSOID_PRESETS"]
__dir__ = public_dir(globals())

SINUSOID_PRESETS = {
    # study E (seed 004): four sinusoids, no phases
    "study_e": {"amplitudes": (0.25, 0.5, 0.75, 1.0), "frequencies": (1, 2, 4, 8)},
    # Rahaman et al. 2019, "On the spectral bias of neural networks": k = 5, 10, ..., 50, equal
    # amplitudes, phases uniform in [0, 2 pi) (drawn from the seed)
    "rahaman": {"amplitudes": (1.0,) * 10, "frequencies": tuple(range(5, 55, 5))},
}
"""Amplitudes and frequencies of the two targets :func:`sinusoids` knows by name."""


def sinusoids(
    *,
    preset: str = "study_e",
    amplitudes: Sequence[float] | None = None,
    frequencies: Sequence[float] | None = None,
    phases: Sequence[float] | str | None = None,
    n: int = 200,
    hidden: Sequence[int] = (256, 256, 256, 256),
    batch_size: int = 20,
    seed: Seed = 0,
    dtype: torch.dtype = torch.float32,
) -> Problem:
    r"""Fit :math:`f(x) = \sum_k a_k \sin(2 \pi f_k x + \varphi_k)` with a ReLU MLP, MSE loss.

    The inputs are the ``n`` points ``x_j = j / n`` of a uniform grid on [0, 1) (so the DFT of
    the targets has its peaks exactly at the bins ``f_k``). ``preset="study_e"``: amplitudes
    0.25, 0.5, 0.75, 1 at frequencies 1, 2, 4, 8, no phases (study E);
    ``preset="rahaman"``: frequencies 5, 10, ..., 50, unit amplitudes and phases uniform in
    [0, 2 pi) drawn from the seed (Rahaman et al. 2019). Explicit ``amplitudes``,
    ``frequencies`` or ``phases`` override the preset. The model is
    :class:`MLP` ``(1, hidden, 1)`` (study E: four hidden layers of 256, ReLU).

    Draw order from the seed: the phases (``"rahaman"`` or ``phases="random"``), the
    model's initialization, the shuffling order of the train loader.

    Parameters
    ----------
    preset
        ``"study_e"`` or ``"rahaman"``.
    amplitudes, frequencies
        Override the preset (same length).
    phases
        ``None`` (the preset's: zeros for study E, random for Rahaman), ``"random"`` or one
        phase per sinusoid.
    n
        Number of grid points (200 in both studies); every frequency must be below ``n / 2``.
    hidden
        Hidden widths of the MLP.
    batch_size
        Batch size of the shuffled train loader (20 in study E).
    seed
        An int or a ``torch.Generator``; the global RNG is not used.
    dtype
        Floating dtype of the model and data.

    Returns
    -------
    Problem
        The train loader is shuffled; the test loader gives the ``n`` grid points in order in
        one batch (what a Fourier analysis of the fit needs). ``info``: ``x``, ``y`` (both
        ``(n, 1)``), ``amplitudes``, ``frequencies``, ``phases`` (1-D tensors).

    Examples
    --------
    >>> from curvlab.problems import sinusoids
    >>> p = sinusoids()
    >>> p.x.shape, p.frequencies.tolist()
    (torch.Size([200, 1]), [1.0, 2.0, 4.0, 8.0])
    """
    if preset not in SINUSOID_PRESETS:
        raise ValueError(f"preset must be one of {sorted(SINUSOID_PRESETS)}, got {preset!r}.")
    n = check_int(n, "n", minimum=2)
    gen = make_generator(check_seed(seed, allow_none=False), share=True)[0]
    base = SINUSOID_PRESETS[preset]
    amps = torch.tensor(
        base["amplitudes"] if amplitudes is None else tuple(amplitudes), dtype=torch.float64
    )
    freqs = torch.tensor(
        base["frequencies"] if frequencies is None else tuple(frequencies), dtype=torch.float64
    )
    if amps.dim() != 1 or amps.shape != freqs.shape or amps.numel() == 0:
        raise ValueError(
            f"amplitudes and frequencies must be non-empty and of the same length, got "
            f"{amps.numel()} and {freqs.numel()}."
        )
    if (freqs <= 0).any() or (freqs >= n / 2).any():
        raise ValueError(
            f"frequencies must lie in (0, n/2) = (0, {n / 2:g}) to be resolved on {n} points, "
            f"got {freqs.tolist()}."
        )
    if phases is None:
        phases = "random" if preset == "rahaman" else "zero"
    if isinstance(phases, str):
        if phases == "random":
            ph = 2 * math.pi * torch.rand(amps.numel(), generator=gen, dtype=torch.float64)
        elif phases == "zero":
            ph = torch.zeros_like(amps)
        else:
            raise ValueError(f"phases must be None, 'random', 'zero' or numbers, got {phases!r}.")
    else:
        ph = torch.tensor(tuple(phases), dtype=torch.float64)
        if ph.shape != amps.shape:
            raise ValueError(f"give one phase per sinusoid ({amps.numel()}), got {ph.numel()}.")

    x = torch.arange(n, dtype=torch.float64).unsqueeze(1) / n
    y = (amps * torch.sin(2 * math.pi * freqs * x + ph)).sum(dim=1, keepdim=True)
    with seeded_init(gen):
        model = MLP(1, tuple(hidden), 1).to(dtype)
    x, y = x.to(dtype), y.to(dtype)
    ds = TensorDataset(x, y)
    train_loader, test_loader = loaders(ds, ds, batch_size=batch_size, seed=gen)
    return Problem(
        model,
        nn.MSELoss(),
        train_loader,
        test_loader,
        name=f"sinusoids({preset})",
        seed=seed,
        info={"x": x, "y": y, "amplitudes": amps, "frequencies": freqs, "phases": ph},
    )
