"""The embedded stand-in for MNIST: scikit-learn's 1,797 8x8 digits, resized and standardized."""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from .._checks import check_int, check_real
from .._public import public_dir
from .._random import check_seed

__all__ = ["digits"]
__dir__ = public_dir(globals())

SPLITS = ("train", "test", "all")


@lru_cache(maxsize=1)
def _load_raw() -> tuple[torch.Tensor, torch.Tensor]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:  # pragma: no cover - scikit-learn is in the test extras
        raise ImportError(
            "curvlab.problems.digits needs scikit-learn (its digits ship inside the package, "
            "no download): pip install scikit-learn"
        ) from err
    bunch = load_digits()
    X = torch.as_tensor(bunch.images, dtype=torch.float64) / 16.0  # (1797, 8, 8) in [0, 1]
    y = torch.as_tensor(bunch.target, dtype=torch.int64)
    return X, y


def digits(
    size: int = 8,
    channels: int = 1,
    split: str = "train",
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
    standardize: bool = True,
    dtype: torch.dtype = torch.float32,
) -> TensorDataset:
    """scikit-learn's handwritten digits as a ``TensorDataset`` of images and labels.

    The 1,797 8x8 images (grey levels 0..16, scaled to [0, 1]) ship inside scikit-learn, so
    this needs no network: it is curvlab's embedded default for MNIST-like work. Images are
    resized to ``size x size`` by bilinear interpolation
    (``F.interpolate(..., mode="bilinear", align_corners=False)``), repeated over
    ``channels``, and standardized with the mean and standard deviation of the *training*
    pixels (one scalar each; the test split uses the same two numbers).

    The split is a seeded random permutation of the 1,797 images: the last
    ``ceil(test_fraction * 1797)`` (360 by default, as
    ``sklearn.model_selection.train_test_split``) form the test split, the others (1,437) the
    train split, in the permuted order. The same ``seed`` always gives the same split.

    Parameters
    ----------
    size
        Side of the square images: 8 (native), 28 (MNIST-like) or 32 (LeNet-5); any
        positive int works.
    channels
        1 (grey) or 3 (the grey image repeated, for models built for RGB input).
    split
        ``"train"``, ``"test"`` or ``"all"`` (the train split followed by the test split).
    test_fraction
        Fraction of the images held out for the test split, in (0, 1).
    seed
        Seed (int) of the train/test permutation.
    standardize
        Subtract the train mean and divide by the train standard deviation.
    dtype
        Floating dtype of the images.

    Returns
    -------
    torch.utils.data.TensorDataset
        ``(X, y)`` with ``X`` of shape ``(N, channels, size, size)`` and integer labels ``y``
        (``int64``, 0..9). ``dataset.tensors`` gives both tensors at once.

    Examples
    --------
    >>> from curvlab.problems import digits
    >>> train = digits(size=32, channels=3, split="train")
    >>> X, y = train.tensors
    >>> tuple(X.shape), tuple(y.shape)
    ((1437, 3, 32, 32), (1437,))
    """
    size = check_int(size, "size")
    channels = check_int(channels, "channels")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}.")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
    if not 0.0 < check_real(test_fraction, "test_fraction") < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}.")
    if isinstance(seed, torch.Generator):
        raise TypeError(
            "seed must be an int (the split must be the same for every call), got Generator."
        )
    seed = int(check_seed(seed, allow_none=False))
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}.")

    X, y = _load_raw()
    n = X.shape[0]
    n_test = math.ceil(test_fraction * n)  # as scikit-learn's train_test_split
    if not 0 < n_test < n:
        raise ValueError(f"test_fraction={test_fraction} leaves an empty split.")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    train_idx, test_idx = perm[: n - n_test], perm[n - n_test :]

    X = X.unsqueeze(1)  # (N, 1, 8, 8)
    if size != X.shape[-1]:
        X = F.interpolate(X, size=(size, size), mode="bilinear", align_corners=False)
    if standardize:
        train_px = X[train_idx]
        X = (X - train_px.mean()) / train_px.std()
    if channels == 3:
        X = X.expand(-1, 3, -1, -1)
    X = X.to(dtype).contiguous()

    idx = {"train": train_idx, "test": test_idx, "all": perm}[split]
    # indexing with a tensor copies: the cached raw tensors are never handed out
    return TensorDataset(X[idx], y[idx])
