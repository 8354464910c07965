"""Fully connected networks: the MLPs of study E and the deep linear network of study B."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from .._checks import check_int
from .._public import public_dir

__all__ = ["MLP", "DeepLinear"]
__dir__ = public_dir(globals())

_ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid,
    "softplus": nn.Softplus,
    "elu": nn.ELU,
}


def _check_widths(widths, name: str) -> tuple[int, ...]:
    widths = tuple(widths)
    try:
        return tuple(check_int(w, f"{name}[{i}]") for i, w in enumerate(widths))
    except (TypeError, ValueError) as e:  # the same error, with the whole sequence
        raise type(e)(f"{name} must be positive ints, got {widths!r}: {e}") from None


class MLP(nn.Sequential):
    """Multilayer perceptron: ``in``, the ``hidden`` widths, ``out``, one activation throughout.

    Inputs with more than two dimensions are flattened from dimension 1 (images work as is).
    Study E uses ``MLP(1, [256] * 4, 1)`` (ReLU, the sinusoids) and ``MLP(784, [784], 10)``
    (MNIST). Linear layers keep PyTorch's default initialization.

    Parameters
    ----------
    in_features, out_features
        Input and output sizes.
    hidden
        Widths of the hidden layers (may be empty: a linear model).
    activation
        ``"relu"``, ``"tanh"``, ``"gelu"``, ``"sigmoid"``, ``"softplus"``, ``"elu"``, or an
        ``nn.Module`` class.
    bias
        Biases in the linear layers.

    Examples
    --------
    >>> import torch
    >>> from curvlab.problems import MLP
    >>> model = MLP(1, [256] * 4, 1)
    >>> model(torch.zeros(5, 1)).shape
    torch.Size([5, 1])
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int] = (256, 256, 256, 256),
        out_features: int = 1,
        *,
        activation: str | type[nn.Module] = "relu",
        bias: bool = True,
    ):
        dims = _check_widths((in_features, *hidden, out_features), "layer sizes")
        if isinstance(activation, str):
            if activation not in _ACTIVATIONS:
                raise ValueError(
                    f"activation must be one of {sorted(_ACTIVATIONS)} or an nn.Module class, "
                    f"got {activation!r}."
                )
            act = _ACTIVATIONS[activation]
        elif isinstance(activation, type) and issubclass(activation, nn.Module):
            act = activation
        else:
            raise TypeError(f"activation must be a name or an nn.Module class, got {activation!r}.")
        layers: list[nn.Module] = [nn.Flatten()]
        for i in range(len(dims) - 1):
            layers.append(nn.Linear(dims[i], dims[i + 1], bias=bias))
            if i < len(dims) - 2:
                layers.append(act())
        super().__init__(*layers)


class DeepLinear(nn.Sequential):
    r"""Deep linear network :math:`y = W_L \cdots W_2 W_1 x` without biases (study B).

    Weights are drawn i.i.d. :math:`N(0, 1)` as in the original Rahimi-Recht code (and divided
    by :math:`\sqrt{\text{width}}` when there are more than two layers, as there).
    ``DeepLinear(12, 13, 14)`` has :math:`12 \cdot 13 + 13 \cdot 14 = 338` parameters.

    Parameters
    ----------
    *dims
        Layer sizes ``in, hidden..., out`` (at least two).
    seed
        Seed of the weights: an int or a ``torch.Generator`` (the global RNG is not used).
    dtype
        Floating dtype of the weights.

    Examples
    --------
    >>> from curvlab.problems import DeepLinear
    >>> net = DeepLinear(12, 13, 14, seed=0)
    >>> sum(p.numel() for p in net.parameters())
    338
    """

    def __init__(self, *dims: int, seed: int | torch.Generator = 0, dtype=torch.float32):
        from .._random import check_seed, make_generator

        dims = _check_widths(dims, "dims")
        if len(dims) < 2:
            raise ValueError(f"DeepLinear needs at least an input and an output size, got {dims}.")
        gen = make_generator(check_seed(seed, allow_none=False), share=True)[0]
        layers = []
        for i in range(len(dims) - 1):
            # skip_init: no default initialization, so the global RNG is never touched
            lin = nn.utils.skip_init(nn.Linear, dims[i], dims[i + 1], bias=False, dtype=dtype)
            with torch.no_grad():
                w = torch.randn(lin.weight.shape, generator=gen, dtype=dtype)
                if len(dims) > 3:
                    w /= math.sqrt(dims[1])
                lin.weight.copy_(w)
            layers.append(lin)
        super().__init__(*layers)
