"""OperatorLike: a plain user class with shape/dtype/device/@ works with every estimator."""

import typing

import pytest
import torch

import curvlab as cl
from curvlab.linalg import _protocol

ESTIMATORS = [
    cl.eigsh,
    cl.lanczos,
    cl.power_iteration,
    cl.spectral_density,
    cl.trace,
    cl.diagonal,
    cl.spectral_gap,
    cl.cg,
]


class MatrixOperator:
    """Not a CurvatureOperator: plain attributes and ``@``, counting its columns."""

    def __init__(self, A: torch.Tensor):
        self.A = A
        self.shape = tuple(A.shape)
        self.dtype = A.dtype
        self.device = A.device
        self.columns = 0

    def __matmul__(self, V: torch.Tensor) -> torch.Tensor:
        self.columns += 1 if V.dim() == 1 else V.shape[1]
        return self.A @ V


class PropertyOperator:
    """The same through read-only properties (what the protocol declares)."""

    def __init__(self, A: torch.Tensor):
        self._A = A

    @property
    def shape(self):
        return tuple(self._A.shape)

    @property
    def dtype(self):
        return self._A.dtype

    @property
    def device(self):
        return self._A.device

    def __matmul__(self, V):
        return self._A @ V


def symmetric(n: int, seed: int = 0, shift: float = 0.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    B = torch.randn(n, n, generator=g, dtype=torch.float64)
    return (B + B.T) / 2 + shift * torch.eye(n, dtype=torch.float64)


def test_plain_class_satisfies_protocol():
    A = symmetric(5)
    assert isinstance(MatrixOperator(A), cl.OperatorLike)
    assert isinstance(PropertyOperator(A), cl.OperatorLike)
    assert isinstance(cl.DenseOperator(A), cl.OperatorLike)
    assert cl.OperatorLike is _protocol.OperatorLike


@pytest.mark.parametrize("missing", ["shape", "dtype", "device", "__matmul__"])
def test_missing_member_does_not_satisfy(missing):
    members = {
        "shape": (3, 3),
        "dtype": torch.float64,
        "device": torch.device("cpu"),
        "__matmul__": lambda self, V: V,
    }
    del members[missing]
    op = type("Incomplete", (), members)()
    assert not isinstance(op, cl.OperatorLike)


@pytest.mark.parametrize("fn", ESTIMATORS, ids=lambda f: f.__name__)
def test_every_estimator_annotates_op(fn):
    assert typing.get_type_hints(fn)["op"] is cl.OperatorLike


@pytest.mark.parametrize("cls", [MatrixOperator, PropertyOperator])
def test_eigsh_on_user_class_float64(cls):
    A = symmetric(40, seed=1)
    exact = torch.linalg.eigvalsh(A)
    res = cl.eigsh(cls(A), k=4, which="LA", tol=1e-12, seed=0)
    assert res.converged
    torch.testing.assert_close(res.eigenvalues, exact[-4:], rtol=0, atol=1e-10)
    res = cl.eigsh(cls(A), k=3, which="SA", tol=1e-12, seed=0)
    torch.testing.assert_close(res.eigenvalues, exact[:3], rtol=0, atol=1e-10)


def test_eigsh_counts_the_user_products():
    op = MatrixOperator(symmetric(30, seed=2))
    res = cl.eigsh(op, k=2, tol=1e-10, seed=0)
    assert res.num_matvecs == op.columns > 0


@pytest.mark.parametrize("method", ["hutch++", "xtrace"])
def test_trace_on_user_class_float64(method):
    # rank 4 of n = 40: Hutch++ (rank <= m / 3) and XTrace (rank < m / 2) are exact at m = 12
    g = torch.Generator().manual_seed(3)
    B = torch.randn(40, 4, generator=g, dtype=torch.float64)
    A = B @ torch.diag(torch.tensor([3.0, -1.0, 2.0, 0.5], dtype=torch.float64)) @ B.T
    op = MatrixOperator(A)
    res = cl.trace(op, num_matvecs=12, method=method, seed=0)
    assert res.num_matvecs == op.columns == 12
    assert abs(res.estimate - float(torch.trace(A))) <= 1e-10 * float(A.abs().sum())


def test_hutchinson_on_user_class_is_unbiased():
    A = symmetric(20, seed=4, shift=5.0)
    res = cl.trace(MatrixOperator(A), num_matvecs=4000, method="hutchinson", seed=0)
    assert abs(res.estimate - float(torch.trace(A))) <= 5 * res.std_error


def test_other_estimators_match_dense_operator():
    A = symmetric(15, seed=5, shift=6.0)  # positive definite, for CG
    user, dense = MatrixOperator(A), cl.DenseOperator(A)
    exact = torch.linalg.eigvalsh(A)

    p = cl.power_iteration(user, k=1, tol=1e-12, max_iter=5000, seed=0)
    assert abs(float(p.eigenvalues[0]) - float(exact.abs().max())) < 1e-6

    lu, ld = cl.lanczos(user, 15, seed=0), cl.lanczos(dense, 15, seed=0)
    torch.testing.assert_close(lu.alpha, ld.alpha)
    torch.testing.assert_close(lu.beta, ld.beta)
    # a full Krylov space: the Ritz values are the eigenvalues
    torch.testing.assert_close(torch.linalg.eigvalsh(lu.tridiagonal()), exact, rtol=0, atol=1e-10)

    su, sd = (cl.spectral_density(o, num_probes=3, num_iter=15, seed=0) for o in (user, dense))
    torch.testing.assert_close(su.nodes, sd.nodes)
    torch.testing.assert_close(su.weights, sd.weights)

    du = cl.diagonal(user, num_matvecs=50, seed=0)
    dd = cl.diagonal(dense, num_matvecs=50, seed=0)
    torch.testing.assert_close(du.estimate, dd.estimate)

    g = cl.spectral_gap(user, tol=1e-10, seed=0)
    assert abs(g.lambda1 - float(exact[-1])) < 1e-8 and abs(g.lambda2 - float(exact[-2])) < 1e-8

    b = torch.ones(15, dtype=torch.float64)
    x = cl.cg(user, b, tol=1e-12).x
    torch.testing.assert_close(x, torch.linalg.solve(A, b), rtol=0, atol=1e-10)


def test_spectral_gap_two_by_two_user_class():
    A = torch.tensor([[3.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
    op = MatrixOperator(A)
    g = cl.spectral_gap(op)
    exact = torch.linalg.eigvalsh(A)
    assert abs(g.lambda1 - float(exact[1])) < 1e-12 and abs(g.lambda2 - float(exact[0])) < 1e-12
    assert g.num_matvecs == op.columns == 4


def test_a_bare_tensor_is_refused():
    A = symmetric(4)
    assert isinstance(A, cl.OperatorLike)  # structurally it has the members...
    with pytest.raises(TypeError, match="DenseOperator"):
        cl.eigsh(A, k=1)  # ...but the estimators ask for a wrapper
