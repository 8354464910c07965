"""Curvature of torchvision and timm models (run by ``make test-vision``).

These tests run in their own environment (``.venv-vision``: torch 2.14.1 with torchvision 0.29.1
and timm, from constraints-vision.txt), because the torchvision build that pairs with the CPU
torch 2.13 of the main test environment does not import beside it. References are independent
of curvlab's products and solvers: SciPy's ARPACK on plain autograd double backward (math
attention backend).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from reference import arpack_top
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import curvlab as cl

torchvision = pytest.importorskip("torchvision")
timm = pytest.importorskip("timm")

DT = torch.float64


def images(n=4, size=32, classes=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(n, 3, size, size, generator=g, dtype=DT),
        torch.randint(0, classes, (n,), generator=g),
    )


def plain_top(model, data, params, k=3):
    """Top-k Hessian eigenvalues by ARPACK on plain autograd HVPs (tests/reference.py)."""
    return arpack_top(model, nn.CrossEntropyLoss(), data, params, k=k)


def assert_top3(model, data, params=None, modes=("rev-rev",)):
    H = None
    for mode in modes:
        H = cl.HessianOperator(model, nn.CrossEntropyLoss(), data, params=params, mode=mode)
        res = cl.eigsh(H, k=3, seed=0, tol=1e-8)
        ref = plain_top(model, data, H.params)
        np.testing.assert_allclose(np.sort(res.eigenvalues.numpy()), ref, rtol=1e-6, atol=1e-9)
        print(
            f"{type(model).__name__} {mode}: curvlab {np.sort(res.eigenvalues.numpy())}, "
            f"ARPACK {ref}, {res.num_matvecs} products, n={H.shape[0]}"
        )
    return H


def test_torchvision_resnet18_in_eval_mode():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).to(DT).eval()
    X, y = images(size=16)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert_top3(model, [(X, y)], params="layer4.1.*")
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_torchvision_resnet18_in_train_mode():
    """Train mode with fixed batches is the batch-statistics function (a warning with the fix);
    a shuffling loader raises; the running statistics are left as they were."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).to(DT).train()
    X, y = images(8)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.warns(UserWarning, match=r"model.eval\(\)"):
        H = cl.HessianOperator(
            model, nn.CrossEntropyLoss(), [(X[:4], y[:4]), (X[4:], y[4:])], params="fc.*"
        )
    H @ torch.ones(H.shape[0], dtype=DT)
    loader = DataLoader(TensorDataset(X, y), batch_size=4, shuffle=True)
    with pytest.raises(ValueError, match="shuffl"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cl.HessianOperator(model, nn.CrossEntropyLoss(), loader, params="fc.*")
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_timm_vit_with_fused_attention_both_modes():
    torch.manual_seed(0)
    model = (
        timm.models.vision_transformer.VisionTransformer(
            img_size=16,
            patch_size=8,
            embed_dim=16,
            depth=2,
            num_heads=2,
            num_classes=10,
            mlp_ratio=2.0,
        )
        .to(DT)
        .eval()
    )
    X, y = images(4, size=16)
    assert_top3(model, [(X, y)], modes=("rev-rev", "fwd-rev"))


def test_timm_convnext():
    torch.manual_seed(0)
    model = (
        timm.models.convnext.ConvNeXt(depths=(1, 1, 1, 1), dims=(8, 16, 24, 32), num_classes=10)
        .to(DT)
        .eval()
    )
    X, y = images(4, size=32)
    assert_top3(model, [(X, y)], modes=("rev-rev", "fwd-rev"))
