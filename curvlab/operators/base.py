"""The :class:`CurvatureOperator` base class and operator algebra.

A curvature operator is a symmetric linear map on the flat parameter space. Estimators in
:mod:`curvlab.linalg` only use ``op @ V``, ``op.shape``, ``op.dtype`` and ``op.device``, so any
subclass (or a :class:`DenseOperator` on a small problem) works with every estimator.
"""

from __future__ import annotations

from contextlib import contextmanager
from numbers import Number

import numpy as np
import torch
from torch import Tensor

from .._public import public_dir

__all__ = [
    "CurvatureOperator",
    "IdentityOperator",
    "SumOperator",
    "ScaledOperator",
]
__dir__ = public_dir(globals())


class CurvatureOperator:
    """Base class: a symmetric ``n x n`` linear operator on flat parameter vectors.

    Subclasses implement ``_matmat`` (``(n, k) -> (n, k)``). The base class validates
    inputs, handles vectors and matrices, counts products (``num_matvecs`` counts columns), and
    provides the algebra ``op1 + op2``, ``c * op``, ``op + s * I`` (see
    :class:`IdentityOperator` and :meth:`shift`), :meth:`to_dense` and :meth:`to_scipy`.

    Attributes
    ----------
    shape : tuple of int
        ``(n, n)``.
    dtype, device
        Those of the vectors the operator accepts and returns.
    params : list of Tensor
        The parameters the operator is the curvature of (empty for matrix-backed operators).
    num_data : int or None
        Number of samples the operator averages over (``None`` where that has no meaning).
    num_matvecs : int
        Number of matrix-vector products done so far (a ``(n, k)`` product counts ``k``).

    Examples
    --------
    >>> import torch
    >>> from curvlab import CurvatureOperator
    >>> class Diagonal(CurvatureOperator):
    ...     def __init__(self, d):
    ...         super().__init__(d.numel(), d.dtype, d.device)
    ...         self.d = d
    ...     def _matmat(self, V):  # V is (n, k)
    ...         return self.d[:, None] * V
    >>> D = Diagonal(torch.tensor([1.0, 2.0, 3.0]))
    >>> D @ torch.ones(3), D.num_matvecs
    (tensor([1., 2., 3.]), 1)
    >>> (D.shift(1.0) @ torch.ones(3)).tolist()
    [2.0, 3.0, 4.0]
    """

    def __init__(self, n: int, dtype: torch.dtype, device: torch.device | str):
        self.shape = (int(n), int(n))
        self.dtype = dtype
        self.device = torch.device(device)
        self.params: list[Tensor] = []
        self.num_data: int | None = None
        self.num_matvecs = 0
        # deferred finiteness checks (see deferred_checks)
        self._defer_checks = False
        self._nonfinite: Tensor | None = None

    # -- finiteness checks -------------------------------------------------------------------
    def _children(self) -> list[CurvatureOperator]:
        """The operators this one is built from (for sums, scalings and shifts)."""
        return []

    def _leaves(self) -> list[CurvatureOperator]:
        kids = self._children()
        return [self] if not kids else [leaf for k in kids for leaf in k._leaves()]

    @contextmanager
    def deferred_checks(self):
        """Products without a host synchronization: the finiteness check is deferred.

        An operator built on a model checks each product for NaN/Inf, which costs one host
        synchronization per product (on a GPU, a stall of the stream). Inside this context the
        check is accumulated on the device instead: :attr:`nonfinite_flag` holds it, an
        estimator reads it in its one per-iteration transfer and calls
        :meth:`raise_if_nonfinite`; the context checks once more when it exits. Outside the
        context (a user's ``op @ v``) every product is checked at once.

        Examples
        --------
        >>> import torch
        >>> from torch import nn
        >>> import curvlab as cl
        >>> data = [(torch.randn(4, 2), torch.randn(4, 1))]
        >>> H = cl.HessianOperator(nn.Linear(2, 1), nn.MSELoss(), data)
        >>> with H.deferred_checks():
        ...     hv = H @ torch.ones(3)
        ...     flag = H.nonfinite_flag  # a 0-dim bool tensor on H.device: no sync so far
        >>> bool(flag)
        False
        """
        leaves = self._leaves()
        before = [op._defer_checks for op in leaves]
        for op in leaves:
            op._defer_checks = True
        ok = False
        try:
            yield self
            ok = True
        finally:
            for op, b in zip(leaves, before):
                op._defer_checks = b
        if ok:
            self.raise_if_nonfinite()
        for op in leaves:  # nothing of the estimator's products outlives the context
            op._nonfinite = None
            op._forget_deferred()

    @property
    def nonfinite_flag(self) -> Tensor | None:
        """``None``, or a 0-dim bool tensor on the device: whether a product made under
        :meth:`deferred_checks` was not finite (read it without a sync by combining it with
        other scalars)."""
        flags = [op._nonfinite for op in self._leaves() if op._nonfinite is not None]
        if not flags:
            return None
        out = flags[0]
        for f in flags[1:]:
            out = out | f
        return out

    def raise_if_nonfinite(self) -> None:
        """Raise the error of a deferred non-finite product, if there was one (one sync)."""
        for op in self._leaves():
            if op._nonfinite is not None and bool(op._nonfinite):
                op._nonfinite = None
                op._raise_deferred_nonfinite()

    #: alias of :meth:`raise_if_nonfinite`
    raise_nonfinite = raise_if_nonfinite

    def _forget_deferred(self) -> None:
        """Drop what a deferred check kept to name a failing batch (model operators)."""

    def _raise_deferred_nonfinite(self) -> None:  # pragma: no cover - model operators override
        raise ValueError("a product of the operator was not finite (NaN or Inf).")

    # -- to override -----------------------------------------------------------------------
    def _matmat(self, V: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- products ----------------------------------------------------------------------------
    def _check_vector(self, v: Tensor) -> None:
        if not isinstance(v, Tensor):
            raise TypeError(
                f"operators multiply torch tensors, got {type(v).__name__}; "
                "convert with torch.as_tensor(v, dtype=op.dtype, device=op.device)."
            )
        if v.dim() not in (1, 2):
            raise ValueError(f"expected a vector (n,) or a matrix (n, k), got {tuple(v.shape)}.")
        n = self.shape[1]
        if v.shape[0] != n:
            raise ValueError(
                f"vector has {v.shape[0]} rows but the operator has {n} columns (one per "
                "selected parameter entry)."
            )
        if v.dtype != self.dtype:
            raise TypeError(
                f"vector dtype {v.dtype} does not match the operator's {self.dtype}; "
                "cast with v.to(op.dtype)."
            )
        if v.device != self.device:
            raise ValueError(
                f"vector is on {v.device} but the operator is on {self.device}; "
                "move it with v.to(op.device)."
            )

    def __matmul__(self, v: Tensor) -> Tensor:
        if isinstance(v, CurvatureOperator):
            return NotImplemented
        self._check_vector(v)
        V = v if v.dim() == 2 else v.unsqueeze(1)
        if V.shape[1] == 0:
            return torch.zeros_like(V) if v.dim() == 2 else torch.zeros_like(v)
        out = self._matmat(V)
        self.num_matvecs += V.shape[1]
        return out if v.dim() == 2 else out.squeeze(1)

    def matvec(self, v: Tensor) -> Tensor:
        """Same as ``self @ v``."""
        return self @ v

    # -- algebra -----------------------------------------------------------------------------
    def __add__(self, other):
        if isinstance(other, CurvatureOperator):
            return SumOperator([self, other])
        if isinstance(other, Number) and other == 0:
            return self
        return NotImplemented

    __radd__ = __add__

    def __sub__(self, other):
        if isinstance(other, CurvatureOperator):
            return SumOperator([self, ScaledOperator(other, -1.0)])
        return NotImplemented

    def __mul__(self, c):
        if isinstance(c, Number) or (isinstance(c, Tensor) and c.numel() == 1):
            return ScaledOperator(self, float(c))
        return NotImplemented

    __rmul__ = __mul__

    def __neg__(self):
        return ScaledOperator(self, -1.0)

    def __truediv__(self, c):
        if isinstance(c, Number):
            return ScaledOperator(self, 1.0 / float(c))
        return NotImplemented

    def shift(self, s: float) -> CurvatureOperator:
        """Return ``self + s * I``."""
        return self + float(s) * IdentityOperator.like(self)

    # -- conversions -------------------------------------------------------------------------
    def to_dense(self, *, chunk_size: int = 64) -> Tensor:
        """Materialize the ``n x n`` matrix (``n`` products, in chunks of columns)."""
        n = self.shape[1]
        cols = []
        for start in range(0, n, chunk_size):
            stop = min(start + chunk_size, n)
            E = torch.zeros(n, stop - start, dtype=self.dtype, device=self.device)
            E[torch.arange(start, stop), torch.arange(stop - start)] = 1
            cols.append(self @ E)
        return torch.cat(cols, dim=1)

    def to_scipy(self):
        """A :class:`scipy.sparse.linalg.LinearOperator` view (numpy in, numpy out)."""
        from scipy.sparse.linalg import LinearOperator

        np_dtype = torch.empty((), dtype=self.dtype).numpy().dtype

        def mv(x):
            t = torch.as_tensor(np.ascontiguousarray(x), device=self.device).to(self.dtype)
            return (self @ t).detach().cpu().numpy()

        return LinearOperator(
            self.shape, matvec=mv, rmatvec=mv, matmat=mv, rmatmat=mv, dtype=np_dtype
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={self.shape[0]}, dtype={self.dtype}, device={self.device})"


class IdentityOperator(CurvatureOperator):
    """The identity on ``n``-vectors; ``op + s * IdentityOperator.like(op)`` shifts a spectrum.

    Examples
    --------
    >>> import torch
    >>> from curvlab import DenseOperator, IdentityOperator
    >>> A = DenseOperator(torch.eye(3))
    >>> (A + 2.0 * IdentityOperator.like(A)) @ torch.ones(3)
    tensor([3., 3., 3.])
    """

    def __init__(self, n: int, *, dtype=torch.float32, device="cpu"):
        super().__init__(n, dtype, device)

    @classmethod
    def like(cls, op: CurvatureOperator) -> IdentityOperator:
        return cls(op.shape[0], dtype=op.dtype, device=op.device)

    def _matmat(self, V: Tensor) -> Tensor:
        return V.clone()


def _check_compatible(ops) -> None:
    first = ops[0]
    for op in ops[1:]:
        if op.shape != first.shape:
            raise ValueError(f"cannot add operators of shapes {first.shape} and {op.shape}.")
        if op.dtype != first.dtype or op.device != first.device:
            raise ValueError(
                f"cannot add operators with dtype/device {first.dtype}/{first.device} and "
                f"{op.dtype}/{op.device}; build them on the same model dtype and device."
            )


class SumOperator(CurvatureOperator):
    """Sum of operators of the same shape, dtype and device.

    Examples
    --------
    >>> import torch
    >>> from curvlab import DenseOperator, SumOperator
    >>> A, B = DenseOperator(torch.eye(2)), DenseOperator(torch.diag(torch.tensor([1.0, 3.0])))
    >>> S = SumOperator([A, B])  # also A + B
    >>> S @ torch.ones(2)
    tensor([2., 4.])
    """

    def __init__(self, ops):
        flat = []
        for op in ops:
            flat.extend(op.ops if isinstance(op, SumOperator) else [op])
        _check_compatible(flat)
        super().__init__(flat[0].shape[0], flat[0].dtype, flat[0].device)
        self.ops = flat
        self.params = next((op.params for op in flat if op.params), [])
        self.num_data = next((op.num_data for op in flat if op.num_data is not None), None)

    def _children(self) -> list[CurvatureOperator]:
        return list(self.ops)

    def _matmat(self, V: Tensor) -> Tensor:
        out = self.ops[0] @ V
        for op in self.ops[1:]:
            out = out + op @ V
        return out


class ScaledOperator(CurvatureOperator):
    """``c * op`` for a real scalar ``c``.

    Examples
    --------
    >>> import torch
    >>> from curvlab import DenseOperator, ScaledOperator
    >>> A = DenseOperator(torch.diag(torch.tensor([1.0, 2.0])))
    >>> ScaledOperator(A, -0.5) @ torch.ones(2)  # also -0.5 * A
    tensor([-0.5000, -1.0000])
    """

    def __init__(self, op: CurvatureOperator, c: float):
        super().__init__(op.shape[0], op.dtype, op.device)
        if isinstance(op, ScaledOperator):
            c, op = c * op.c, op.op
        self.op, self.c = op, float(c)
        self.params, self.num_data = op.params, op.num_data

    def _children(self) -> list[CurvatureOperator]:
        return [self.op]

    def _matmat(self, V: Tensor) -> Tensor:
        return self.c * (self.op @ V)
