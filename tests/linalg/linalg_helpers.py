"""Shared test matrices for the curvlab.linalg tests: symmetric matrices with known spectra."""

from __future__ import annotations

import torch
from hypothesis import strategies as st

from curvlab import CurvatureOperator, DenseOperator

KINDS = ("clustered", "repeated", "negative", "near_zero", "outlier_bulk", "low_rank", "mixed")


def orthogonal(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    Q, R = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    return Q * torch.sign(torch.diagonal(R))


def with_spectrum(eigs, seed: int = 0, dtype=torch.float64) -> DenseOperator:
    """``Q diag(eigs) Q^T`` with a random orthogonal ``Q`` (built in float64, then cast)."""
    e = torch.as_tensor(eigs, dtype=torch.float64)
    Q = orthogonal(e.numel(), seed)
    A = (Q * e) @ Q.T
    return DenseOperator(((A + A.T) / 2).to(dtype))


def make_spectrum(kind: str, n: int, seed: int) -> torch.Tensor:
    """A spectrum of the given shape (float64, unsorted)."""
    g = torch.Generator().manual_seed(seed)

    def rand(m, lo=-1.0, hi=1.0):
        return lo + (hi - lo) * torch.rand(m, generator=g, dtype=torch.float64)

    if kind == "clustered":  # a few tight clusters
        centers = rand(3, -5.0, 5.0)
        idx = torch.randint(0, 3, (n,), generator=g)
        return centers[idx] + 1e-3 * torch.randn(n, generator=g, dtype=torch.float64)
    if kind == "repeated":  # a handful of distinct values, each repeated
        values = rand(4, -3.0, 3.0)
        return values[torch.randint(0, 4, (n,), generator=g)]
    if kind == "negative":
        return -rand(n, 0.1, 10.0)
    if kind == "near_zero":  # most eigenvalues within 1e-9 of zero, a few of order one
        e = 1e-9 * torch.randn(n, generator=g, dtype=torch.float64)
        e[:3] = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
        return e
    if kind == "outlier_bulk":  # the shape of real Hessians: one outlier and a bulk
        e = 0.1 * torch.randn(n, generator=g, dtype=torch.float64)
        e[0] = 30.0
        return e
    if kind == "low_rank":
        e = torch.zeros(n, dtype=torch.float64)
        e[:3] = torch.tensor([3.0, 1.5, -1.0], dtype=torch.float64)
        return e
    # mixed: simple values, a repeated top eigenvalue
    e = rand(n, -2.0, 2.0)
    e[:3] = 4.0
    return e


@st.composite
def spectra(draw, min_n: int = 8, max_n: int = 50):
    kind = draw(st.sampled_from(KINDS))
    n = draw(st.integers(min_n, max_n))
    seed = draw(st.integers(0, 10_000))
    return kind, make_spectrum(kind, n, seed), seed


def reference_selection(eigs: torch.Tensor, k: int, which: str) -> torch.Tensor:
    """The eigenvalues eigsh must return, in ascending order, from the full spectrum."""
    e = torch.sort(eigs).values
    if which == "LA":
        out = e[-k:]
    elif which == "SA":
        out = e[:k]
    elif which == "LM":
        out = e[torch.argsort(e.abs(), descending=True, stable=True)[:k]]
    else:  # BE: k // 2 from the bottom, the rest from the top
        out = torch.cat([e[: k // 2], e[e.numel() - (k - k // 2) :]])
    return torch.sort(out).values


class FunctionOperator(CurvatureOperator):
    """An operator from a function ``V -> A V`` (for odd cases: NaN products)."""

    def __init__(self, fn, n, dtype=torch.float64):
        super().__init__(n, dtype, "cpu")
        self.fn = fn

    def _matmat(self, V):
        return self.fn(V)
