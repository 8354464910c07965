"""Shared operator check, random draws and device plumbing for the estimators (private).

Argument checks (integers, tolerances) are :mod:`curvlab._checks`'s.

Seeds go through curvlab's one seed policy (``make_generator``: an integer is drawn from a
Generator ``seed``, so that the returned integer reproduces the run).

Host synchronization: a product (:func:`product`, :func:`matmul`) never reads a value back to
the host. Each solver iteration makes at most one transfer (:func:`to_host`) that carries
every scalar it decides on, the finiteness of the values it computed from the product and the
operator's own non-finite flag (:func:`nonfinite_flag`); ``tests/linalg/
test_linalg_host_syncs.py`` counts them.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import Tensor

from ._protocol import OperatorLike

__all__ = [
    "check_operator",
    "gaussian",
    "rademacher",
    "matmul",
    "product",
    "work_dtype",
    "nonfinite_flag",
    "raise_nonfinite",
    "to_host",
    "to_device",
    "check_finite_end",
    "finite_packet",
    "check_packet",
]

NONFINITE_MESSAGE = (
    "the operator returned NaN or Inf: check the model's loss for overflow (or the matrix for "
    "non-finite entries), or compute in float64."
)


def check_operator(op: OperatorLike) -> int:
    """Check that ``op`` looks like a square operator and return ``n``."""
    if isinstance(op, Tensor):
        raise TypeError(
            "expected a CurvatureOperator, got a tensor; wrap a symmetric matrix with "
            "curvlab.DenseOperator(matrix)."
        )
    for attr in ("shape", "dtype", "device"):
        if not hasattr(op, attr):
            raise TypeError(
                f"expected a CurvatureOperator (with shape, dtype, device and @), got "
                f"{type(op).__name__} without .{attr}; wrap a matrix with "
                "curvlab.DenseOperator(matrix)."
            )
    shape = tuple(op.shape)
    if len(shape) != 2 or shape[0] != shape[1]:
        raise ValueError(f"the estimators need a square (symmetric) operator, got shape {shape}.")
    if not op.dtype.is_floating_point or op.dtype.is_complex:
        raise TypeError(f"the operator must have a real floating dtype, got {op.dtype}.")
    if shape[0] < 1:
        raise ValueError("the operator is empty (n = 0).")
    return int(shape[0])


def gaussian(shape, gen: torch.Generator, dtype, device) -> Tensor:
    """Standard normal draws in ``dtype`` (drawn in float64 for low-precision dtypes)."""
    draw_dtype = dtype if dtype in (torch.float32, torch.float64) else torch.float32
    return torch.randn(shape, generator=gen, dtype=draw_dtype, device=device).to(dtype)


def rademacher(shape, gen: torch.Generator, dtype, device) -> Tensor:
    """Independent +-1 entries with probability 1/2 each."""
    bits = torch.randint(0, 2, shape, generator=gen, device=device)
    return (2 * bits - 1).to(dtype)


def work_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype of the solvers' bookkeeping (bases, projections, orthogonalization): the
    operator's dtype, or float32 for float16/bfloat16 operators (half precision loses the
    orthogonality of a Lanczos basis within a few steps)."""
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def matmul(op: OperatorLike, V: Tensor) -> Tensor:
    """``op @ V``, with no host synchronization (no finiteness check here: the callers fold it
    into their one transfer per iteration, or :func:`check_finite_end`)."""
    return op @ V


def product(op: OperatorLike, V: Tensor, dtype: torch.dtype) -> Tensor:
    """``op @ V`` for ``V`` in the working ``dtype``: cast to the operator's dtype for the
    product and back (a no-op when they agree). No host synchronization."""
    out = op @ (V if V.dtype == op.dtype else V.to(op.dtype))
    return out if out.dtype == dtype else out.to(dtype)


def nonfinite_flag(op: OperatorLike) -> Tensor | None:
    """The operator's device flag of non-finite products (``op.nonfinite_flag``: a 0-dim bool
    tensor, ``True`` if a product since the last check was non-finite), or ``None`` for an
    operator without one. Read with ``getattr`` so that any :class:`OperatorLike` works."""
    flag = getattr(op, "nonfinite_flag", None)
    return flag if isinstance(flag, Tensor) else None


def raise_nonfinite(op: OperatorLike, flagged: bool = True):
    """Raise the operator's own error (``op.raise_nonfinite()``) when its flag was set, else
    the estimators' :class:`ValueError`."""
    raiser = getattr(op, "raise_nonfinite", None)
    if flagged and callable(raiser):
        raiser()
    raise ValueError(NONFINITE_MESSAGE)


def to_host(t: Tensor) -> np.ndarray:
    """The one device-to-host transfer of a solver iteration: ``t`` flattened, as float64."""
    return np.asarray(t.detach().reshape(-1).to(torch.float64).tolist(), dtype=np.float64)


def to_device(a, device: torch.device, dtype: torch.dtype) -> Tensor:
    """A small host array on ``device`` in ``dtype`` (float32 or float64); on CUDA through
    pinned memory and ``non_blocking`` (the copy does not wait for the device)."""
    np_dtype = np.float64 if dtype == torch.float64 else np.float32
    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np_dtype))
    if torch.device(device).type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device=device, dtype=dtype)


def finite_packet(op: OperatorLike, *values: Tensor) -> Tensor:
    """A device vector ``[all values non-finite?, operator flag]`` (0/1 floats) to append to
    an iteration's transfer."""
    dev = op.device
    bad = torch.zeros((), dtype=torch.bool, device=dev)
    for v in values:
        bad = bad | ~torch.isfinite(v).all()
    flag = nonfinite_flag(op)
    flag = torch.zeros((), dtype=torch.bool, device=dev) if flag is None else flag.to(dev)
    return torch.stack([bad, flag.reshape(())]).to(torch.float64)


def check_packet(op: OperatorLike, bad: float, flag: float) -> None:
    """Raise if the host copy of :func:`finite_packet` says so."""
    if flag:
        raise_nonfinite(op, True)
    if bad:
        raise_nonfinite(op, False)


def check_finite_end(op: OperatorLike, *values: Tensor) -> None:
    """The end-of-estimator check (one transfer): ``values`` finite and the operator's flag
    clear."""
    bad, flag = to_host(finite_packet(op, *values))
    check_packet(op, bad, flag)


def defers_checks(estimator):
    """Run ``estimator(op, ...)`` inside ``op.deferred_checks()`` when the operator has it
    (curvlab's model-based operators): their products then make no host synchronization, and
    the estimator reads the operator's :func:`nonfinite_flag` in its per-iteration transfer."""

    @functools.wraps(estimator)
    def wrapper(*args, **kwargs):
        op = args[0] if args else kwargs.get("op")
        ctx = getattr(op, "deferred_checks", None)
        if not callable(ctx):
            return estimator(*args, **kwargs)
        with ctx():
            return estimator(*args, **kwargs)

    return wrapper


class ConvergenceWarning(UserWarning):
    """An eigensolver stopped before every wanted pair met ``tol`` (its result says
    ``converged=False`` and carries the residuals)."""


def warn_unconverged(what: str, res, tol: float) -> None:
    """Warn that ``res`` (an :class:`EigenResult`) did not converge, with what to do."""
    import warnings

    from ..risk import user_stacklevel

    worst = float(res.residuals.max()) if res.residuals is not None else float("nan")
    dtype = res.eigenvalues.dtype
    floor = ""
    if dtype in (torch.float32, torch.float16, torch.bfloat16):
        floor = (
            f" In {str(dtype).replace('torch.', '')} the products' rounding puts a floor of about "
            "1e-6 of the products' scale under the residual (higher near a minimum, where the "
            "loss's rounding dominates): eigenvalues near or below that floor cannot meet a "
            "relative tol (use float64, or a larger tol)."
        )
    warnings.warn(
        f"{what} did not converge in {res.num_matvecs} products (largest residual "
        f"{worst:.3g}, tol {tol:g} relative to each eigenvalue): the eigenvalues are accurate to "
        "about residual^2 / gap. Raise max_matvecs (or ncv), loosen tol, or check "
        f"result.residuals; result.converged is False.{floor}",
        ConvergenceWarning,
        stacklevel=user_stacklevel(),
    )
