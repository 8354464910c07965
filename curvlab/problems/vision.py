"""MNIST, Fashion-MNIST and CIFAR-10 through torchvision, from local files only (no download)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from .._checks import check_int
from .._public import public_dir

__all__ = ["vision", "VISION_DATASETS", "DATA_ENV"]
__dir__ = public_dir(globals())

DATA_ENV = "CURVLAB_DATA"
"""Environment variable read for the data folder when ``root`` is not given."""

_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_CIFAR_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")

# name -> (torchvision class, sub-folder torchvision expects, files, native size, channels,
#          mean, std per channel); statistics are the usual ones of each training set.
VISION_DATASETS = {
    "mnist": ("MNIST", "MNIST/raw", _MNIST_FILES, 28, 1, (0.1307,), (0.3081,)),
    "fashion_mnist": ("FashionMNIST", "FashionMNIST/raw", _MNIST_FILES, 28, 1, (0.286,), (0.353,)),
    "cifar10": (
        "CIFAR10",
        "cifar-10-batches-py",
        _CIFAR_FILES,
        32,
        3,
        (0.4914, 0.4822, 0.4465),
        (0.2470, 0.2435, 0.2616),
    ),
}
"""The data sets :func:`vision` knows, with the layout torchvision expects under ``root``."""

_GREY_CIFAR = ((0.4809,), (0.2393,))  # luma of CIFAR-10's training images (ITU-R 601-2)
_LUMA = (0.299, 0.587, 0.114)


class ImageTransform:
    """PIL image or array -> standardized float tensor ``(channels, size, size)``.

    Written with torch only (no ``torchvision.transforms``): scale to [0, 1], convert RGB to
    grey (ITU-R 601-2 luma, as PIL's ``"L"`` mode) or repeat grey to 3 channels, resize
    bilinearly, standardize with ``mean`` and ``std`` (per channel).
    """

    def __init__(self, size: int, channels: int, mean, std, dtype=torch.float32):
        self.size, self.channels, self.dtype = size, channels, dtype
        self.mean = torch.tensor(mean, dtype=dtype).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=dtype).view(-1, 1, 1)

    def __call__(self, img) -> Tensor:
        x = torch.as_tensor(np.array(img, copy=True)).to(self.dtype) / 255.0
        x = x.unsqueeze(0) if x.dim() == 2 else x.permute(2, 0, 1)  # (C, H, W)
        if x.shape[0] == 3 and self.channels == 1:
            luma = torch.tensor(_LUMA, dtype=self.dtype).view(3, 1, 1)
            x = (x * luma).sum(0, keepdim=True)
        elif x.shape[0] == 1 and self.channels == 3:
            x = x.expand(3, -1, -1)
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = F.interpolate(
                x.unsqueeze(0), size=(self.size, self.size), mode="bilinear", align_corners=False
            ).squeeze(0)
        return ((x - self.mean) / self.std).contiguous()

    def __repr__(self) -> str:
        return f"ImageTransform(size={self.size}, channels={self.channels})"


def _resolve_root(root) -> Path:
    if root is None:
        root = os.environ.get(DATA_ENV)
        if not root:
            raise FileNotFoundError(
                f"no data folder: pass root=... or set the {DATA_ENV} environment variable to the "
                "folder that holds the torchvision data sets (curvlab never downloads). Without "
                "data, use curvlab.problems.digits(), the embedded stand-in for MNIST."
            )
    return Path(root).expanduser()


def vision(
    name: str = "mnist",
    root: str | os.PathLike | None = None,
    *,
    split: str = "train",
    size: int | None = None,
    channels: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> Dataset:
    """MNIST, Fashion-MNIST or CIFAR-10 from files already on disk, through torchvision.

    curvlab never downloads: the files must already be under ``root`` in torchvision's layout
    (``root/MNIST/raw/``, ``root/FashionMNIST/raw/`` with the four uncompressed
    ``*-ubyte`` files, ``root/cifar-10-batches-py/``), e.g. after a one-off
    ``torchvision.datasets.MNIST(root, download=True)`` on a machine with network.
    The data set is opened with ``download=False``.

    Parameters
    ----------
    name
        ``"mnist"``, ``"fashion_mnist"`` or ``"cifar10"``.
    root
        The data folder; default: the ``CURVLAB_DATA`` environment variable.
    split
        ``"train"`` or ``"test"``.
    size
        Side of the returned images (bilinear resize); default: native (28 or 32). Studies C
        and D use 32 for MNIST.
    channels
        1 or 3; default: native. CIFAR-10 with ``channels=1`` is the grey CIFAR of study D
        (luma, as PIL's ``"L"``); MNIST with ``channels=3`` repeats the grey channel.
    dtype
        Floating dtype of the images.

    Returns
    -------
    torch.utils.data.Dataset
        The torchvision data set, whose items are ``(image, label)`` with ``image`` a
        standardized tensor ``(channels, size, size)`` (usual training-set mean and std)
        and ``label`` an int.

    Raises
    ------
    FileNotFoundError
        If no root is given or the files are not under it (the message lists what is missing
        and where it must go).
    ImportError
        If the files are there but torchvision is not installed.

    Examples
    --------
    >>> from curvlab.problems import vision
    >>> try:
    ...     train = vision("mnist", root="/nonexistent")
    ... except FileNotFoundError as err:
    ...     print("not available")
    not available
    """
    if name not in VISION_DATASETS:
        raise ValueError(
            f"unknown data set {name!r}; choose one of {sorted(VISION_DATASETS)} "
            "(or curvlab.problems.digits() for the embedded digits)."
        )
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    cls_name, sub, files, native_size, native_ch, mean, std = VISION_DATASETS[name]
    if size is None:
        size = native_size
    size = check_int(size, "size")
    if channels is None:
        channels = native_ch
    channels = check_int(channels, "channels")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}.")

    root = _resolve_root(root)
    folder = root / sub
    missing = [f for f in files if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{cls_name} is not under {str(root)!r}: expected the files {list(files)} in "
            f"{str(folder)!r} (missing: {missing}). curvlab never downloads; fetch them once "
            f"with torchvision.datasets.{cls_name}(root, download=True) where there is network "
            f"and point root= (or {DATA_ENV}) at that folder, or use curvlab.problems.digits()."
        )
    try:
        import torchvision.datasets as tvd
    except ImportError as err:
        raise ImportError(
            f"the {cls_name} files are under {str(root)!r} but torchvision is not installed: "
            "pip install torchvision (matching your torch version)."
        ) from err

    if channels == 1 and native_ch == 3:
        mean, std = _GREY_CIFAR
    elif channels == 3 and native_ch == 1:
        mean, std = mean * 3, std * 3
    transform = ImageTransform(size, channels, mean, std, dtype=dtype)
    cls = getattr(tvd, cls_name)
    return cls(str(root), train=(split == "train"), download=False, transform=transform)
