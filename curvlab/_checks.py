"""Argument checks: the one convention for validating hyperparameters in curvlab.

Every check takes ``(value, name)`` in that order, returns the value (normalized where
stated) and raises

- :class:`TypeError` when ``value`` has the wrong type (a string where a number is expected,
  a bool or a float where an integer is expected, a set where a pair is expected);
- :class:`ValueError` when it has the right type but a wrong value (negative, not finite,
  out of range, a pair of the wrong length).

Both messages name the argument and what was expected.

Examples
--------
>>> check_positive(0.5, "lr")
0.5
>>> check_int(3, "update_each")
3
>>> check_betas((0.9, 0.999), "betas")
(0.9, 0.999)
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any

import torch

__all__ = [
    "check_real",
    "check_nonneg",
    "check_positive",
    "check_int",
    "check_beta",
    "check_betas",
]


def _is_real_tensor(value: Any) -> bool:
    return (
        isinstance(value, torch.Tensor)
        and value.numel() == 1
        and not value.is_complex()
        and value.dtype != torch.bool
    )


def check_real(value: Any, name: str, *, tensor_ok: bool = False, allow_inf: bool = False) -> Any:
    """A finite real number (``bool`` excluded; numpy numbers accepted).

    With ``tensor_ok``, a one-element real tensor is accepted too (and returned as it is);
    otherwise a tensor is a :class:`ValueError` that says to pass a Python number. With
    ``allow_inf``, ``inf`` and ``-inf`` are accepted (``nan`` never is).
    """
    if isinstance(value, torch.Tensor):
        if not tensor_ok:
            raise ValueError(
                f"{name} given as a Tensor is not supported: pass a Python number "
                f"({name}=float(t))."
            )
        if not _is_real_tensor(value):
            raise ValueError(
                f"{name} given as a Tensor must be a real tensor with one element, got shape "
                f"{tuple(value.shape)} and dtype {value.dtype}."
            )
        number = float(value.detach().reshape(()).cpu())
    elif isinstance(value, Real) and not isinstance(value, bool):
        number = float(value)
    else:
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}.")
    if allow_inf and math.isnan(number):
        raise ValueError(f"{name} must be a number (inf allowed), got nan.")
    if not allow_inf and not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {number}.")
    return value


def _number(value: Any) -> float:
    if isinstance(value, torch.Tensor):
        return float(value.detach().reshape(()).cpu())
    return float(value)


def check_nonneg(value: Any, name: str, *, tensor_ok: bool = False, allow_inf: bool = False) -> Any:
    """A finite real number ``>= 0`` (see :func:`check_real` for ``tensor_ok`` and
    ``allow_inf``)."""
    check_real(value, name, tensor_ok=tensor_ok, allow_inf=allow_inf)
    if _number(value) < 0:
        raise ValueError(f"{name} must be a non-negative number, got {_number(value)}.")
    return value


def check_positive(
    value: Any, name: str, *, tensor_ok: bool = False, allow_inf: bool = False
) -> Any:
    """A finite real number ``> 0`` (see :func:`check_real` for ``tensor_ok`` and
    ``allow_inf``)."""
    check_real(value, name, tensor_ok=tensor_ok, allow_inf=allow_inf)
    if _number(value) <= 0:
        raise ValueError(f"{name} must be positive, got {_number(value)}.")
    return value


def check_int(value: Any, name: str, minimum: int = 1) -> int:
    """An integer (``bool`` excluded; numpy integers accepted) ``>= minimum``; returns an int."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}.")
    if int(value) < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {int(value)}.")
    return int(value)


def check_beta(value: Any, name: str) -> Any:
    """A real number in ``[0, 1)`` (an exponential moving-average coefficient)."""
    check_real(value, name)
    if not 0.0 <= float(value) < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {float(value)}.")
    return value


def check_betas(value: Any, name: str = "betas") -> Any:
    """A pair ``(beta1, beta2)`` (tuple or list), each in ``[0, 1)``."""
    if not isinstance(value, (tuple, list)):
        raise TypeError(
            f"{name} must be a pair (beta1, beta2) as a tuple or list, got {type(value).__name__}."
        )
    if len(value) != 2:
        raise ValueError(f"{name} must be a pair (beta1, beta2), got {len(value)} values.")
    check_beta(value[0], f"{name}[0]")
    check_beta(value[1], f"{name}[1]")
    return value
