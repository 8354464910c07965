"""GGNOperator (curvlab/operators/ggn.py): exact GGN against dense float64; Monte-Carlo Fisher."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from operator_problems import DT, LOSSES, MODES, make_loss, make_problem
from reference import dense_ggn
from torch import nn

import curvlab as cl


@pytest.fixture
def problem():
    return make_problem("ce", "mlp", 3, 8, 0, [4, 4])


@given(
    kind=st.sampled_from(LOSSES),
    arch=st.sampled_from(["mlp", "cnn"]),
    width=st.integers(1, 5),
    seed=st.integers(0, 10_000),
    mode=st.sampled_from(MODES),
    reduction=st.sampled_from(["mean", "sum"]),
)
def test_ggn_matches_dense(kind, arch, width, seed, mode, reduction):
    model, data = make_problem(kind, arch, width, 8, seed, [3, 5])
    loss = make_loss(kind, reduction)
    G = cl.GGNOperator(model, loss, data, mode=mode)
    torch.testing.assert_close(G.to_dense(), dense_ggn(model, loss, data), rtol=1e-9, atol=1e-10)


def test_mc_fisher_converges_to_ggn():
    model, data = make_problem("ce", "mlp", 3, 12, 7, [5, 7])
    loss = nn.CrossEntropyLoss()
    G = cl.GGNOperator(model, loss, data).to_dense()
    errs = []
    for m in (4, 64, 1024):
        F = cl.GGNOperator(model, loss, data, mc_samples=m, seed=0).to_dense()
        torch.testing.assert_close(F, F.T)  # a fixed symmetric matrix
        errs.append((torch.linalg.matrix_norm(F - G) / torch.linalg.matrix_norm(G)).item())
    assert errs[-1] < 0.1
    assert errs[-1] < errs[0]
    # unbiased: averaging independent seeds converges too
    avg = sum(cl.GGNOperator(model, loss, data, mc_samples=8, seed=s).to_dense() for s in range(64))
    assert torch.linalg.matrix_norm(avg / 64 - G) / torch.linalg.matrix_norm(G) < 0.1


@pytest.mark.parametrize("kind", ["mse", "bce"])
def test_mc_fisher_regression_and_binary(kind):
    model, data = make_problem(kind, "mlp", 2, 10, 2)
    loss = make_loss(kind)
    G = cl.GGNOperator(model, loss, data).to_dense()
    F = cl.GGNOperator(model, loss, data, mc_samples=2000, seed=1).to_dense()
    assert torch.linalg.matrix_norm(F - G) / torch.linalg.matrix_norm(G) < 0.1


def test_mc_fisher_seed_reproducible():
    model, data = make_problem("ce", "mlp", 3, 8, 0)
    v = torch.ones(sum(p.numel() for p in model.parameters()), dtype=DT)
    a = cl.GGNOperator(model, nn.CrossEntropyLoss(), data, mc_samples=3, seed=11)
    b = cl.GGNOperator(model, nn.CrossEntropyLoss(), data, mc_samples=3, seed=11)
    c = cl.GGNOperator(model, nn.CrossEntropyLoss(), data, mc_samples=3, seed=12)
    assert torch.equal(a @ v, b @ v) and torch.equal(a @ v, a @ v)
    assert not torch.equal(a @ v, c @ v)
    assert a.seed == 11


def test_ggn_equals_hessian_for_linear_regression():
    # closed form: for a linear model with MSE the Hessian is the GGN, 2 X^T X / (N D)
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(30, 4, generator=gen, dtype=DT)
    y = torch.randn(30, 2, generator=gen, dtype=DT)
    model = nn.Linear(4, 2, bias=False).to(DT)
    data = [(X[:13], y[:13]), (X[13:], y[13:])]
    H = cl.HessianOperator(model, nn.MSELoss(), data).to_dense()
    G = cl.GGNOperator(model, nn.MSELoss(), data).to_dense()
    expected = torch.kron(torch.eye(2, dtype=DT), 2 * X.T @ X / (30 * 2))
    torch.testing.assert_close(H, expected)
    torch.testing.assert_close(G, expected)


def test_mc_fisher_arguments_checked(problem):
    # (was part of test_fisher_with_unsupported_loss; the loss checks are in test_operators_losses)
    model, data = problem
    with pytest.raises(ValueError, match="mc_samples"):
        cl.GGNOperator(model, nn.CrossEntropyLoss(), data, mc_samples=-1)
    with pytest.raises(TypeError, match="seed"):
        cl.GGNOperator(model, nn.CrossEntropyLoss(), data, mc_samples=1, seed="a")


@pytest.mark.parametrize(
    "loss_fn",
    [nn.L1Loss(), nn.L1Loss(reduction="sum"), nn.MultiMarginLoss(p=1)],
    ids=["l1", "l1-sum", "multimargin"],
)
def test_ggn_of_a_loss_without_output_curvature_is_refused(loss_fn):
    """A piecewise-linear loss has a zero output Hessian: its GGN would be the zero matrix."""
    torch.manual_seed(0)
    model = nn.Linear(3, 2).double()
    y = torch.randn(5, 2, dtype=torch.float64)
    if isinstance(loss_fn, nn.MultiMarginLoss):
        y = torch.randint(0, 2, (5,))
    with pytest.raises(ValueError, match="piecewise linear"):
        cl.GGNOperator(model, loss_fn, [(torch.randn(5, 3, dtype=torch.float64), y)])
    # the Hessian through the same loss is allowed (and is the network's curvature)
    cl.HessianOperator(model, loss_fn, [(torch.randn(5, 3, dtype=torch.float64), y)])


def test_ggn_of_a_custom_loss_linear_in_the_output_warns():
    from curvlab.operators._losses import NoCurvatureWarning

    model = nn.Linear(3, 2).double()
    data = [(torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64))]
    G = cl.GGNOperator(model, lambda out, y: (out * y).mean(), data)
    with pytest.warns(NoCurvatureWarning, match="no second derivative"):
        out = G @ torch.ones(G.shape[0], dtype=torch.float64)
    assert torch.equal(out, torch.zeros_like(out))
