"""The :class:`Problem` bundle, seeded DataLoaders and the two small losses the studies use."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from .. import _random
from .._checks import check_int
from .._public import public_dir

__all__ = ["Problem", "loaders", "RMSELoss", "ObjectiveLoss"]
__dir__ = public_dir(globals())

Seed = int | torch.Generator


@contextmanager
def seeded_init(gen: torch.Generator) -> Iterator[None]:
    """Run a block (typically a model's construction) with the global RNG seeded from ``gen``.

    The global RNG state is saved before and restored after (``torch.random.fork_rng``), so
    the caller's global randomness is untouched while torch's default initializers, which
    draw from the global RNG, become reproducible from ``gen`` (one draw of it).
    """
    s = _random.draw_seed(gen)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(s)
        yield


@dataclass(frozen=True)
class Problem:
    """A model, its loss and its data: plain torch objects, nothing curvlab-specific.

    Unpacks as ``model, loss_fn, train_loader, test_loader = problem``. Extra facts of the
    problem (the true matrix of a regression, the condition number, the sampled points, ...)
    are in ``info`` and can also be read as attributes (``problem.A`` is
    ``problem.info["A"]``).

    Attributes
    ----------
    model
        The network (an ``nn.Module``), freshly initialized from the problem's seed.
    loss_fn
        ``loss_fn(model(X), y) -> scalar``.
    train_loader, test_loader
        ``torch.utils.data.DataLoader`` objects yielding ``(X, y)`` batches (``test_loader`` is
        ``None`` where the study has no test set). A shuffling train loader draws its order from
        its own seeded generator: two passes see two different orders, so give a curvature
        operator the (unshuffled) test loader or a list of batches.
    name
        Short name of the problem.
    seed
        The seed the problem was built from.
    info
        Read-only mapping of extra facts (documented by each problem function).

    Examples
    --------
    >>> from curvlab.problems import rahimi_recht
    >>> model, loss_fn, train_loader, test_loader = rahimi_recht(c=30)
    >>> X, y = next(iter(test_loader))
    >>> loss_fn(model(X), y).ndim
    0
    """

    model: nn.Module
    loss_fn: Callable[..., Tensor]
    train_loader: DataLoader | None
    test_loader: DataLoader | None
    name: str = ""
    seed: Seed | None = None
    info: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "info", MappingProxyType(dict(self.info)))

    def __iter__(self) -> Iterator[Any]:
        return iter((self.model, self.loss_fn, self.train_loader, self.test_loader))

    def __getattr__(self, key: str) -> Any:
        # only called when normal lookup fails: fall back to the extra facts in ``info``
        if key.startswith("__") or key == "info":
            raise AttributeError(key)
        info = self.__dict__.get("info", {})
        if key in info:
            return info[key]
        raise AttributeError(
            f"{type(self).__name__} {self.__dict__.get('name', '')!r} has no attribute {key!r}; "
            f"its info holds {sorted(info)}."
        )


def loaders(
    train_set: Dataset,
    test_set: Dataset | None = None,
    *,
    batch_size: int,
    test_batch_size: int | None = None,
    shuffle: bool = True,
    seed: Seed = 0,
) -> tuple[DataLoader, DataLoader | None]:
    """Train and test DataLoaders, the train one shuffled by its own seeded generator.

    Parameters
    ----------
    train_set, test_set
        Map-style datasets (e.g. the ``TensorDataset`` of :func:`digits`). ``test_set`` may be
        ``None`` (the second loader is then ``None``).
    batch_size
        Batch size of the train loader.
    test_batch_size
        Batch size of the test loader (default: the whole test set in one batch).
    shuffle
        Shuffle the train loader (reshuffled at every pass, reproducibly from ``seed``).
    seed
        Seed of the shuffling order: an int, or a ``torch.Generator`` from which an
        independent generator is drawn. The global RNG is never used.

    Returns
    -------
    tuple
        ``(train_loader, test_loader)``; the test loader is never shuffled.

    Examples
    --------
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> from curvlab.problems import loaders
    >>> ds = TensorDataset(torch.arange(10.0), torch.arange(10))
    >>> train, test = loaders(ds, ds, batch_size=4, seed=0)
    >>> [len(y) for _, y in train]
    [4, 4, 2]
    """
    batch_size = check_int(batch_size, "batch_size")
    _random.check_seed(seed, allow_none=False)  # problems are always seeded
    # a Generator seed is drawn from (an independent stream), not shared with the loader
    gen, _ = _random.make_generator(seed, share=False)
    train = DataLoader(train_set, batch_size=batch_size, shuffle=shuffle, generator=gen)
    if test_set is None:
        return train, None
    if test_batch_size is None:
        test_batch_size = max(len(test_set), 1)
    test_batch_size = check_int(test_batch_size, "test_batch_size")
    # a generator even without shuffling: DataLoader otherwise draws its base seed from the
    # global RNG at every pass
    test = DataLoader(
        test_set, batch_size=test_batch_size, shuffle=False, generator=torch.Generator()
    )
    return train, test


class RMSELoss(nn.Module):
    r"""Root mean squared error :math:`\sqrt{\mathrm{mean}((\hat y - y)^2)}` (study B).

    Over several batches, curvlab's operators average the per-batch RMSE weighted by batch
    size, which is not the RMSE of the union; use one full batch where that matters.

    Examples
    --------
    >>> import torch
    >>> from curvlab.problems import RMSELoss
    >>> RMSELoss()(torch.tensor([3.0, 0.0]), torch.tensor([0.0, 4.0]))
    tensor(3.5355)
    """

    reduction = "mean"

    def forward(self, output: Tensor, target: Tensor) -> Tensor:
        return torch.sqrt(nn.functional.mse_loss(output, target))


class ObjectiveLoss(nn.Module):
    """The loss of a model that already returns its objective: ``loss_fn(output, y) = output``.

    Used by :func:`matrix_factorization`, whose module computes the regularized objective
    itself, so that it fits the ``loss_fn(model(X), y)`` convention of every other problem.

    Examples
    --------
    >>> import torch
    >>> from curvlab.problems import ObjectiveLoss
    >>> ObjectiveLoss()(torch.tensor(2.5), None)
    tensor(2.5000)
    """

    reduction = "mean"

    def forward(self, output: Tensor, target: Any = None) -> Tensor:
        if output.numel() != 1:
            raise ValueError(
                f"ObjectiveLoss expects the model to return a scalar objective, got shape "
                f"{tuple(output.shape)}."
            )
        return output.reshape(())
