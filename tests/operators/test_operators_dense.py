"""DenseOperator (curvlab/operators/dense.py)."""

import pytest
import torch

import curvlab as cl


def test_dense_operator():
    A = torch.tensor([[2.0, 1.0], [1.0, 3.0]])
    op = cl.DenseOperator(A)
    torch.testing.assert_close(op @ torch.tensor([1.0, 0.0]), A[:, 0])
    torch.testing.assert_close(op.to_dense(), A)
    with pytest.raises(ValueError, match="symmetric"):
        cl.DenseOperator(torch.tensor([[1.0, 2.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="square"):
        cl.DenseOperator(torch.ones(2, 3))
    with pytest.raises(TypeError, match="floating"):
        cl.DenseOperator(torch.eye(2, dtype=torch.long))
    with pytest.raises(ValueError, match="NaN"):
        cl.DenseOperator(torch.tensor([[float("nan")]]))
