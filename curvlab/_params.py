"""Conversions between parameter lists, dicts and flat vectors, and parameter selection.

Everything in curvlab that turns a list of parameter tensors into one flat vector (or back)
goes through this module, so that the parameter order is the same everywhere: the order of
``model.named_parameters()`` restricted to the selected parameters.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import Tensor, nn

__all__ = [
    "select_params",
    "flatten",
    "unflatten",
    "unflatten_dict",
    "num_params",
]


def num_params(params: Iterable[Tensor]) -> int:
    """Total number of entries of a list of tensors."""
    return sum(p.numel() for p in params)


def flatten(tensors: Iterable[Tensor] | Mapping[str, Tensor]) -> Tensor:
    """Concatenate tensors (or the values of a dict, in insertion order) into one flat vector.

    Examples
    --------
    >>> import torch
    >>> flatten([torch.ones(2, 2), torch.zeros(3)]).shape
    torch.Size([7])
    """
    if isinstance(tensors, Mapping):
        tensors = list(tensors.values())
    tensors = list(tensors)
    if not tensors:
        raise ValueError("flatten() got no tensors: select at least one parameter.")
    return torch.cat([t.reshape(-1) for t in tensors])


def flatten_batched(tensors: Sequence[Tensor], k: int) -> Tensor:
    """Flatten tensors of shape ``(k, *shape)`` into one ``(n, k)`` matrix (columns = vectors)."""
    return torch.cat([t.reshape(k, -1) for t in tensors], dim=1).T


def unflatten(vec: Tensor, like: Sequence[Tensor]) -> list[Tensor]:
    """Split a flat vector ``(n,)`` into tensors shaped like ``like`` (views when possible).

    A matrix ``(n, k)`` is split into tensors of shape ``(k, *p.shape)`` (columns first), the
    layout ``torch.func.vmap`` and ``is_grads_batched`` expect.
    """
    n = num_params(like)
    if vec.shape[0] != n:
        raise ValueError(
            f"vector has {vec.shape[0]} entries but the parameters have {n}: pass a vector "
            "with one entry per selected parameter."
        )
    sizes = [p.numel() for p in like]
    if vec.dim() == 1:
        return [c.view_as(p) for c, p in zip(torch.split(vec, sizes), like)]
    if vec.dim() == 2:
        k = vec.shape[1]
        cols = vec.T
        return [c.reshape(k, *p.shape) for c, p in zip(torch.split(cols, sizes, dim=1), like)]
    raise ValueError(f"expected a vector (n,) or a matrix (n, k), got shape {tuple(vec.shape)}.")


def unflatten_dict(vec: Tensor, like: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Split a flat vector into a dict with the keys and shapes of ``like``."""
    return dict(zip(like.keys(), unflatten(vec, list(like.values()))))


def select_params(
    model: nn.Module,
    params: None | nn.Module | Iterable[Tensor] | Iterable[str] | str = None,
) -> tuple[list[str], list[Tensor]]:
    """Resolve a parameter selection to ``(names, tensors)`` in the model's parameter order.

    Parameters
    ----------
    model
        The module whose parameters are selected.
    params
        ``None``: every parameter with ``requires_grad``. A submodule of ``model``: its
        trainable parameters. A list of tensors: those tensors (each must be a parameter of
        ``model``). A string or a list of strings: parameter names, or glob patterns such as
        ``"fc2.*"``, matched against ``model.named_parameters()``.

    Returns
    -------
    names, tensors
        Names and tensors, in the order of ``model.named_parameters()``.

    Examples
    --------
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    >>> select_params(model, ["1.*"])[0]
    ['1.weight', '1.bias']
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    named = list(model.named_parameters())
    if params is None:
        chosen = [(n, p) for n, p in named if p.requires_grad]
        if not chosen:
            raise ValueError(
                "the model has no trainable parameters (all have requires_grad=False): "
                "unfreeze some, or pass params= explicitly."
            )
        return [n for n, _ in chosen], [p for _, p in chosen]

    if isinstance(params, nn.Module):
        ids = {id(p) for p in params.parameters() if p.requires_grad}
        if not ids:
            raise ValueError("the module passed as params has no trainable parameters.")
        chosen = [(n, p) for n, p in named if id(p) in ids]
        if len(chosen) != len(ids):
            raise ValueError("the module passed as params is not a submodule of model.")
        return [n for n, _ in chosen], [p for _, p in chosen]

    if isinstance(params, str):
        params = [params]
    params = list(params)
    if not params:
        raise ValueError("params is empty: select at least one parameter (or pass None for all).")

    if all(isinstance(p, str) for p in params):
        names = [n for n, _ in named]
        keep: set[str] = set()
        for pattern in params:
            hits = [n for n in names if n == pattern or fnmatch.fnmatchcase(n, pattern)]
            if not hits:
                raise ValueError(
                    f"no parameter of the model matches {pattern!r}; its parameters are "
                    f"{names[:20]}{' ...' if len(names) > 20 else ''}."
                )
            keep.update(hits)
        chosen = [(n, p) for n, p in named if n in keep]
    elif all(isinstance(p, Tensor) for p in params):
        index = {id(p): n for n, p in named}
        for p in params:
            if id(p) not in index:
                raise ValueError(
                    "a tensor in params is not a parameter of the model: pass the model's own "
                    "parameters (e.g. model.fc.weight), names, or a submodule."
                )
        ids = {id(p) for p in params}
        chosen = [(n, p) for n, p in named if id(p) in ids]
    else:
        raise TypeError("params must be None, a module, a list of tensors, or a list of names.")

    frozen = [n for n, p in chosen if not p.requires_grad]
    if frozen:
        raise ValueError(f"selected parameters {frozen} have requires_grad=False.")
    return [n for n, _ in chosen], [p for _, p in chosen]
