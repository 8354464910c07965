"""CurvatureOperator (curvlab/operators/base.py): algebra, to_dense / to_scipy, vector checks."""

import numpy as np
import pytest
import torch
from operator_problems import DT, make_problem
from torch import nn

import curvlab as cl


@pytest.fixture
def problem():
    return make_problem("ce", "mlp", 3, 8, 0, [4, 4])


def test_to_dense_and_to_scipy_agree():
    model, data = make_problem("mse", "mlp", 3, 8, 1)
    op = cl.GGNOperator(model, nn.MSELoss(), data)
    dense = op.to_dense()
    lin = op.to_scipy()
    eye = np.eye(op.shape[0])
    np.testing.assert_allclose(lin @ eye, dense.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(lin.matvec(eye[:, 2]), dense[:, 2].numpy(), rtol=1e-12)
    assert lin.dtype == np.float64
    # scipy's eigsh through the adapter finds the dense top eigenvalue
    from scipy.sparse.linalg import eigsh

    top = eigsh(lin, k=1, which="LA", return_eigenvectors=False)[0]
    assert np.isclose(top, torch.linalg.eigvalsh(dense)[-1].item(), rtol=1e-8)


def test_operator_algebra():
    model, data = make_problem("ce", "mlp", 2, 6, 0)
    H = cl.HessianOperator(model, nn.CrossEntropyLoss(), data)
    G = cl.GGNOperator(model, nn.CrossEntropyLoss(), data)
    Hd, Gd = H.to_dense(), G.to_dense()
    n = H.shape[0]
    eye = torch.eye(n, dtype=DT)
    torch.testing.assert_close((H + G).to_dense(), Hd + Gd)
    torch.testing.assert_close((2.5 * H).to_dense(), 2.5 * Hd)
    torch.testing.assert_close((H - G).to_dense(), Hd - Gd)
    torch.testing.assert_close((H + 0.3 * cl.IdentityOperator.like(H)).to_dense(), Hd + 0.3 * eye)
    torch.testing.assert_close(H.shift(-1.0).to_dense(), Hd - eye)
    torch.testing.assert_close((-H / 2).to_dense(), -Hd / 2)
    with pytest.raises(ValueError, match="shapes"):
        H + cl.IdentityOperator(n + 1, dtype=DT)
    with pytest.raises(ValueError, match="dtype"):
        H + cl.IdentityOperator(n, dtype=torch.float32)


def test_vector_wrong_length_dtype_device(problem):
    model, data = problem
    H = cl.HessianOperator(model, nn.CrossEntropyLoss(), data)
    n = H.shape[0]
    with pytest.raises(ValueError, match="rows"):
        H @ torch.ones(n + 1, dtype=DT)
    with pytest.raises(TypeError, match="dtype"):
        H @ torch.ones(n, dtype=torch.float32)
    with pytest.raises(ValueError, match=r"\(n,\) or a matrix"):
        H @ torch.ones(n, 1, 1, dtype=DT)
    with pytest.raises(TypeError, match="torch tensors"):
        H @ [1.0] * n
    meta = torch.ones(n, dtype=DT, device="meta")
    with pytest.raises(ValueError, match="is on meta"):
        H @ meta
