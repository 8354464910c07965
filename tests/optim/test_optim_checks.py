"""curvlab._checks: one argument order (value, name), TypeError for a type, ValueError for a
value; and the optimizers use it (a wrong type is a TypeError, a wrong value a ValueError)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from curvlab._checks import (
    check_beta,
    check_betas,
    check_int,
    check_nonneg,
    check_positive,
    check_real,
)
from curvlab.optim import AdaHessian, Apollo, DampedNewton, Sophia


def test_checks_return_the_value_and_accept_numpy_numbers():
    assert check_nonneg(0.0, "x") == 0.0
    assert check_positive(np.float32(0.5), "x") == np.float32(0.5)
    assert check_int(np.int64(3), "k") == 3 and type(check_int(np.int64(3), "k")) is int
    assert check_beta(0.0, "beta") == 0.0
    assert check_betas([0.9, 0.99], "betas") == [0.9, 0.99]


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: check_nonneg("1", "lr"), "lr must be a real number, got str"),
        (lambda: check_nonneg(True, "lr"), "got bool"),
        (lambda: check_int(2.0, "update_each"), "update_each must be an integer, got float"),
        (lambda: check_int(True, "k"), "got bool"),
        (lambda: check_beta(None, "beta"), "beta must be a real number"),
        (lambda: check_betas(0.9, "betas"), "pair"),
        (lambda: check_betas({0.9, 0.99}, "betas"), "tuple or list"),
    ],
)
def test_a_wrong_type_is_a_type_error(call, match):
    with pytest.raises(TypeError, match=match):
        call()


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: check_nonneg(-1e-9, "eps"), "eps must be a non-negative number, got -1e-09"),
        (lambda: check_nonneg(float("inf"), "eps"), "eps must be finite"),
        (lambda: check_positive(0, "rho"), "rho must be positive, got 0"),
        (lambda: check_int(0, "k"), "k must be an integer >= 1, got 0"),
        (lambda: check_int(-1, "warmup", minimum=0), ">= 0, got -1"),
        (lambda: check_beta(1.0, "beta"), r"beta must be in \[0, 1\), got 1.0"),
        (lambda: check_betas((0.9,), "betas"), "got 1 values"),
        (lambda: check_betas((0.9, 1.5), "betas"), r"betas\[1\] must be in \[0, 1\)"),
        (lambda: check_real(torch.tensor(0.1), "lr"), "not supported"),
        (lambda: check_real(torch.ones(2), "lr", tensor_ok=True), "one element"),
        (lambda: check_nonneg(torch.tensor(-0.1), "lr", tensor_ok=True), "non-negative"),
    ],
)
def test_a_wrong_value_is_a_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_a_one_element_tensor_is_accepted_where_allowed():
    t = torch.tensor(1e-3)
    assert check_nonneg(t, "lr", tensor_ok=True) is t


@pytest.mark.parametrize(
    "make, exc, match",
    [
        (lambda p: AdaHessian(p, update_each=1.5), TypeError, "update_each must be an integer"),
        (lambda p: AdaHessian(p, update_each=0), ValueError, "update_each"),
        (lambda p: AdaHessian(p, betas=0.9), TypeError, "betas"),
        (lambda p: AdaHessian(p, hessian_power="1"), TypeError, "hessian_power"),
        (lambda p: Sophia(p, rho="0.04"), TypeError, "rho"),
        (lambda p: Apollo(p, warmup=10.0), TypeError, "warmup"),
        (lambda p: DampedNewton(p, cg_max_iter=0), ValueError, "cg_max_iter"),
    ],
)
def test_optimizers_follow_the_convention(make, exc, match):
    with pytest.raises(exc, match=match):
        make([torch.nn.Parameter(torch.ones(2))])
