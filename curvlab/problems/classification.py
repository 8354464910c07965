"""Image classification problems: the studies' networks on the digits, MNIST or CIFAR-10."""

from __future__ import annotations

import os

import torch
from torch import nn
from torch.utils.data import Dataset, Subset, TensorDataset

from .._checks import check_int
from .._public import public_dir
from .._random import check_seed, make_generator
from .digits import digits
from .lenet import LeNet5
from .mlp import MLP
from .problem import Problem, Seed, loaders, seeded_init
from .resnet import ResNet
from .transformer import Transformer
from .vision import VISION_DATASETS, vision

__all__ = ["image_classification", "CLASSIFIERS"]
__dir__ = public_dir(globals())

# name -> (default size, default channels or None for the data's own, builder(size, channels))
CLASSIFIERS = {
    "lenet5-tanh": (32, 1, lambda s, c: LeNet5("tanh", in_channels=c, input_size=s)),
    "lenet5-relu": (32, 1, lambda s, c: LeNet5("relu", in_channels=c, input_size=s)),
    "lenet5-bn": (32, 3, lambda s, c: LeNet5("batchnorm", in_channels=c, input_size=s)),
    "mlp": (28, 1, lambda s, c: MLP(c * s * s, [784], 10)),
    "resnet": (32, 3, lambda s, c: ResNet(in_channels=c)),
    "transformer": (None, 1, lambda s, c: Transformer(in_features=c * s, max_len=s)),
}
"""The networks :func:`image_classification` builds by name, with their default input."""

_NATIVE = {"digits": (8, 1)} | {k: (v[3], v[4]) for k, v in VISION_DATASETS.items()}


def _subsample(ds: Dataset, k: int | None, gen: torch.Generator, name: str) -> Dataset:
    if k is None:
        return ds
    k = check_int(k, name)
    if k > len(ds):
        raise ValueError(f"{name}={k} exceeds the {len(ds)} available examples.")
    idx = torch.randperm(len(ds), generator=gen)[:k]
    if isinstance(ds, TensorDataset):
        return TensorDataset(*(t[idx] for t in ds.tensors))
    return Subset(ds, idx.tolist())


def image_classification(
    model: str | nn.Module = "lenet5-tanh",
    *,
    data: str = "digits",
    root: str | os.PathLike | None = None,
    size: int | None = None,
    channels: int | None = None,
    batch_size: int = 64,
    test_batch_size: int = 1000,
    n_train: int | None = None,
    n_test: int | None = None,
    seed: Seed = 0,
    dtype: torch.dtype = torch.float32,
) -> Problem:
    """A classifier, cross-entropy and the train/test loaders of an image data set.

    Networks by name (or pass any ``nn.Module``, used as is):

    ============== ====================================== ================ ==========
    name           network                                default input    study
    ============== ====================================== ================ ==========
    lenet5-tanh    :class:`LeNet5` tanh, average pooling  32x32, grey      C
    lenet5-relu    :class:`LeNet5` ReLU, max pooling      32x32, grey      D
    lenet5-bn      :class:`LeNet5` BatchNorm, ReLU        32x32, 3 chan.   A
    mlp            :class:`MLP` 784-784-10 (ReLU)         28x28, grey      E
    resnet         small CIFAR :class:`ResNet`            32x32, 3 chan.   B
    transformer    :class:`Transformer`, rows as tokens   native, grey     B
    ============== ====================================== ================ ==========

    Data: ``"digits"`` (embedded, :func:`digits`, its default train/test split of 1,437 /
    360 images, resized to the network's input) or ``"mnist"``, ``"fashion_mnist"``,
    ``"cifar10"`` (:func:`vision`, from files under ``root`` or ``$CURVLAB_DATA``; CIFAR-10
    in grey for the grey networks, as study D).

    Draw order from the seed: the model's initialization, the train and test subsamples
    (``n_train``, ``n_test``), the shuffling order of the train loader.

    Parameters
    ----------
    model
        A name from the table or an ``nn.Module``.
    data
        ``"digits"``, ``"mnist"``, ``"fashion_mnist"`` or ``"cifar10"``.
    root
        Data folder for the torchvision data sets.
    size, channels
        Input images (default: the network's, or the data's own for a module or the
        transformer).
    batch_size, test_batch_size
        Batch sizes of the shuffled train loader and of the test loader.
    n_train, n_test
        Random subsets of this size (default: everything); for quick runs.
    seed
        An int or a ``torch.Generator``; the global RNG is not used.
    dtype
        Floating dtype of the model and the images.

    Returns
    -------
    Problem
        ``loss_fn`` is ``nn.CrossEntropyLoss()``; ``info``: ``data``, ``size``, ``channels``.

    Examples
    --------
    >>> from curvlab.problems import image_classification
    >>> p = image_classification("lenet5-bn", n_train=256)
    >>> X, y = next(iter(p.train_loader))
    >>> tuple(X.shape), sum(q.numel() for q in p.model.fc3.parameters())
    ((64, 3, 32, 32), 850)
    """
    if data not in _NATIVE:
        raise ValueError(f"data must be one of {sorted(_NATIVE)}, got {data!r}.")
    native_size, native_ch = _NATIVE[data]
    if isinstance(model, str):
        if model not in CLASSIFIERS:
            raise ValueError(
                f"model must be one of {sorted(CLASSIFIERS)} or an nn.Module, got {model!r}."
            )
        def_size, def_ch, build = CLASSIFIERS[model]
        size = size if size is not None else (def_size or native_size)
        channels = channels if channels is not None else def_ch
    elif isinstance(model, nn.Module):
        build = None
        size = size if size is not None else native_size
        channels = channels if channels is not None else native_ch
    else:
        raise TypeError(f"model must be a name or an nn.Module, got {type(model).__name__}.")
    size = check_int(size, "size")
    batch_size = check_int(batch_size, "batch_size")

    gen = make_generator(check_seed(seed, allow_none=False), share=True)[0]
    if build is not None:
        with seeded_init(gen):
            model = build(size, channels).to(dtype)
    if data == "digits":
        train = digits(size, channels, "train", dtype=dtype)
        test = digits(size, channels, "test", dtype=dtype)
    else:
        train = vision(data, root, split="train", size=size, channels=channels, dtype=dtype)
        test = vision(data, root, split="test", size=size, channels=channels, dtype=dtype)
    train = _subsample(train, n_train, gen, "n_train")
    test = _subsample(test, n_test, gen, "n_test")
    train_loader, test_loader = loaders(
        train, test, batch_size=batch_size, test_batch_size=test_batch_size, seed=gen
    )
    return Problem(
        model,
        nn.CrossEntropyLoss(),
        train_loader,
        test_loader,
        name=f"image_classification({data})",
        seed=seed,
        info={"data": data, "size": size, "channels": channels},
    )
