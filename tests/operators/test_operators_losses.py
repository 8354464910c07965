"""What the operators need of a loss (curvlab/operators/_losses.py): a known likelihood, no
class weights."""

import pytest
import torch
from operator_problems import DT, make_problem
from torch import nn

import curvlab as cl


@pytest.fixture
def problem():
    return make_problem("ce", "mlp", 3, 8, 0, [4, 4])


def test_fisher_with_unsupported_loss(problem):
    model, data = problem

    def custom(out, y):
        return nn.functional.cross_entropy(out, y)

    with pytest.raises(TypeError, match="known likelihood"):
        cl.EmpiricalFisherOperator(model, custom, data)
    with pytest.raises(TypeError, match="known likelihood"):
        cl.GGNOperator(model, custom, data, mc_samples=1)
    with pytest.raises(ValueError, match="class weights"):
        cl.GGNOperator(model, nn.CrossEntropyLoss(weight=torch.ones(3, dtype=DT)), data)
