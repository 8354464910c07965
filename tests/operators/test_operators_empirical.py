"""EmpiricalRiskOperator (curvlab/operators/empirical.py): mode, batched or looped columns."""

import pytest
import torch
from operator_problems import DT, MODES, make_problem
from reference import dense_empirical_fisher, dense_ggn, dense_hessian
from torch import nn

import curvlab as cl


@pytest.fixture
def problem():
    return make_problem("ce", "mlp", 3, 8, 0, [4, 4])


@pytest.mark.parametrize("cls", [cl.HessianOperator, cl.GGNOperator, cl.EmpiricalFisherOperator])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("batch_columns", [True, False, None])
def test_symmetry_and_batched_columns(cls, mode, batch_columns):
    model, data = make_problem("ce", "cnn", 2, 10, 3, [6, 4])
    op = cls(model, nn.CrossEntropyLoss(), data, mode=mode, batch_columns=batch_columns)
    # None chooses the loop on CPU for a model with a convolution in rev-rev mode (a fwd-rev
    # loop would redo the forward pass for every column)
    default = mode == "fwd-rev"
    assert op.batch_columns is (batch_columns if batch_columns is not None else default)
    gen = torch.Generator().manual_seed(0)
    V = torch.randn(op.shape[0], 5, generator=gen, dtype=DT)
    HV = op @ V
    cols = torch.stack([op @ V[:, j] for j in range(5)], dim=1)
    torch.testing.assert_close(HV, cols, rtol=1e-10, atol=1e-12)
    dense = {
        cl.HessianOperator: dense_hessian,
        cl.GGNOperator: dense_ggn,
        cl.EmpiricalFisherOperator: dense_empirical_fisher,
    }[cls](model, nn.CrossEntropyLoss(), data)
    torch.testing.assert_close(HV, dense @ V, rtol=1e-9, atol=1e-11)
    # w^T (H v) == v^T (H w)
    torch.testing.assert_close(V[:, 0] @ HV[:, 1], V[:, 1] @ HV[:, 0], rtol=1e-10, atol=1e-12)
    assert op.num_matvecs == 10


def test_batch_columns_default_and_validation():
    mlp, data = make_problem("ce", "mlp", 3, 8, 0)
    assert cl.HessianOperator(mlp, nn.CrossEntropyLoss(), data).batch_columns is True
    cnn, cdata = make_problem("ce", "cnn", 2, 8, 0)
    assert cl.GGNOperator(cnn, nn.CrossEntropyLoss(), cdata).batch_columns is False
    with pytest.raises(TypeError, match="batch_columns"):
        cl.HessianOperator(mlp, nn.CrossEntropyLoss(), data, batch_columns="yes")


def test_unknown_mode(problem):
    model, data = problem
    with pytest.raises(ValueError, match="mode"):
        cl.HessianOperator(model, nn.CrossEntropyLoss(), data, mode="fast")
