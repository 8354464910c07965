"""What a batch ``(X, y)`` is: moving it to a device, its size, and calling a model on it.

``X`` is a tensor, a tuple (passed to the model positionally) or a dict (passed as keyword
arguments). Shared by the operators and the landscapes so that both read data the same way.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn


def to_device(x, device):
    """Move the tensors in ``x`` (a tensor, a tuple/list or a dict of them) to ``device``."""
    if isinstance(x, Tensor):
        return x.to(device) if x.device != device else x
    if isinstance(x, tuple | list):
        return type(x)(to_device(t, device) for t in x)
    if isinstance(x, Mapping):
        return {k: to_device(v, device) for k, v in x.items()}
    return x


def batch_size(X, y) -> int:
    """Leading dimension of ``y`` (or of ``X``, or of the first tensor inside ``X``)."""
    for t in (y, X):
        if isinstance(t, Tensor) and t.dim() > 0:
            return t.shape[0]
    seq = list(X.values()) if isinstance(X, Mapping) else X if isinstance(X, tuple | list) else []
    for t in seq:
        if isinstance(t, Tensor) and t.dim() > 0:
            return t.shape[0]
    raise ValueError(
        "cannot tell the batch size: X or y must hold a tensor with a batch dimension."
    )


def call_model(model: nn.Module, X):
    """``model(X)``, ``model(*X)`` for a tuple or list, ``model(**X)`` for a dict."""
    if isinstance(X, Mapping):
        return model(**X)
    if isinstance(X, tuple | list):
        return model(*X)
    return model(X)
