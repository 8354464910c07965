"""curvlab.problems: the studies' data, models and problems against independent truths.

References: scikit-learn's raw digits and ``numpy.interp`` (resizing), ``numpy.linalg.cond`` and
least squares (Rahimi-Recht), closed-form gradients and Hessians (matrix factorization),
``numpy.fft`` (sinusoids), ``nn.MultiheadAttention`` (math attention), finite differences of
gradients (double backward through attention), and parameter counts written out by hand.
"""

from __future__ import annotations

import math
import sys
import types

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn
from torch.utils.data import TensorDataset

import curvlab as cl
import curvlab.problems as P

DT = torch.float64


# ----------------------------------------------------------------------------- helpers
def n_params(module):
    return sum(p.numel() for p in module.parameters())


def state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_state(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def first_batch(loader):
    return next(iter(loader))


def hvp_double_backward(model, loss_fn, X, y, params, v):
    """H v by autograd double backward (create_graph) on one batch."""
    loss = loss_fn(model(X), y)
    g = torch.autograd.grad(loss, params, create_graph=True)
    dot = sum((gi * vi).sum() for gi, vi in zip(g, v, strict=True))
    return torch.autograd.grad(dot, params)


def hvp_finite_differences(model, loss_fn, X, y, params, v, eps=1e-5):
    """H v by central differences of gradients (float64)."""

    def grads():
        loss = loss_fn(model(X), y)
        return torch.autograd.grad(loss, params)

    with torch.no_grad():
        for p, vi in zip(params, v, strict=True):
            p.add_(eps * vi)
    gp = grads()
    with torch.no_grad():
        for p, vi in zip(params, v, strict=True):
            p.sub_(2 * eps * vi)
    gm = grads()
    with torch.no_grad():
        for p, vi in zip(params, v, strict=True):
            p.add_(eps * vi)
    return [(a - b) / (2 * eps) for a, b in zip(gp, gm, strict=True)]


# ----------------------------------------------------------------------------- Problem, loaders
def test_problem_unpacks_and_exposes_info_as_attributes():
    p = P.Problem(nn.Linear(2, 1), nn.MSELoss(), None, None, name="toy", info={"A": 3})
    model, loss_fn, train, test = p
    assert isinstance(model, nn.Linear) and isinstance(loss_fn, nn.MSELoss)
    assert train is None and test is None
    assert p.A == 3 and p.info["A"] == 3
    with pytest.raises(TypeError):
        p.info["B"] = 1  # read-only
    with pytest.raises(AttributeError, match="has no attribute 'B'"):
        p.B  # noqa: B018
    with pytest.raises(AttributeError):
        p.model = None  # frozen


@given(n=st.integers(1, 40), bs=st.integers(1, 12), seed=st.integers(0, 2**31))
def test_loaders_batches_cover_the_data_and_shuffle_reproducibly(n, bs, seed):
    ds = TensorDataset(torch.arange(n, dtype=DT), torch.arange(n))
    train, test = P.loaders(ds, ds, batch_size=bs, seed=seed)
    batches = [y for _, y in train]
    assert [len(y) for y in batches] == [bs] * (n // bs) + ([n % bs] if n % bs else [])
    order1 = torch.cat(batches)
    assert sorted(order1.tolist()) == list(range(n))
    again, _ = P.loaders(ds, ds, batch_size=bs, seed=seed)
    assert torch.equal(torch.cat([y for _, y in again]), order1)
    # the test loader is one ordered batch
    (Xt, yt), *rest = list(test)
    assert not rest and torch.equal(yt, torch.arange(n))


def test_loaders_reshuffle_each_pass_and_accept_a_generator():
    ds = TensorDataset(torch.arange(50.0), torch.arange(50))
    train, _ = P.loaders(ds, batch_size=50, seed=0)
    a, b = first_batch(train)[1], first_batch(train)[1]
    assert not torch.equal(a, b)
    t1, _ = P.loaders(ds, batch_size=50, seed=torch.Generator().manual_seed(3))
    t2, _ = P.loaders(ds, batch_size=50, seed=torch.Generator().manual_seed(3))
    assert torch.equal(first_batch(t1)[1], first_batch(t2)[1])


def test_loaders_reject_bad_input():
    ds = TensorDataset(torch.arange(5.0))
    with pytest.raises(ValueError, match="batch_size"):
        P.loaders(ds, batch_size=0)
    with pytest.raises(TypeError, match="batch_size"):
        P.loaders(ds, batch_size=2.0)
    with pytest.raises(TypeError, match="seed"):
        P.loaders(ds, batch_size=2, seed=1.5)


def test_losses_closed_forms():
    out, y = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.0, 0.0, 7.0])
    assert torch.isclose(P.RMSELoss()(out, y), torch.tensor(math.sqrt((0 + 4 + 16) / 3)))
    assert P.ObjectiveLoss()(torch.tensor([2.0]), None) == 2.0
    with pytest.raises(ValueError, match="scalar"):
        P.ObjectiveLoss()(torch.ones(3), None)


# ----------------------------------------------------------------------------- digits
def _raw_digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.images / 16.0, d.target


def _bilinear_numpy(img, size):
    """align_corners=False bilinear resize, separable, with numpy.interp (edges clamped)."""
    n = img.shape[0]
    src = np.clip((np.arange(size) + 0.5) * n / size - 0.5, 0, n - 1)
    grid = np.arange(n)
    rows = np.stack([np.interp(src, grid, r) for r in img])  # (n, size)
    return np.stack([np.interp(src, grid, c) for c in rows.T]).T  # (size, size)


def test_digits_split_is_a_seeded_partition_of_sklearn_digits():
    images, target = _raw_digits()
    tr = P.digits(split="train", standardize=False, dtype=DT)
    te = P.digits(split="test", standardize=False, dtype=DT)
    Xtr, ytr = tr.tensors
    Xte, yte = te.tensors
    assert Xtr.shape == (1437, 1, 8, 8) and Xte.shape == (360, 1, 8, 8)
    assert ytr.dtype == torch.int64
    # every image is one of sklearn's, with its label, and the two splits partition the set
    flat = torch.as_tensor(images.reshape(len(images), -1))
    both = torch.cat([Xtr, Xte]).reshape(-1, 64)
    idx = torch.cdist(both, flat).argmin(1)
    assert torch.allclose(both, flat[idx])
    assert torch.equal(torch.cat([ytr, yte]), torch.as_tensor(target)[idx])
    assert len(set(idx.tolist())) == len(images)
    # "all" is train followed by test; same seed same split, other seed other split
    Xall, _ = P.digits(split="all", standardize=False, dtype=DT).tensors
    assert torch.equal(Xall, torch.cat([Xtr, Xte]))
    assert torch.equal(P.digits(split="test", standardize=False, dtype=DT).tensors[0], Xte)
    other = P.digits(split="test", standardize=False, dtype=DT, seed=1).tensors[0]
    assert not torch.equal(other, Xte)


@given(size=st.integers(5, 40))
def test_digits_resize_is_bilinear(size):
    Xall, _ = P.digits(size=8, split="all", standardize=False, dtype=DT).tensors
    Xr, _ = P.digits(size=size, split="all", standardize=False, dtype=DT).tensors
    assert Xr.shape == (1797, 1, size, size)
    for i in (0, 1000):
        ref = _bilinear_numpy(Xall[i, 0].numpy(), size)
        np.testing.assert_allclose(Xr[i, 0].numpy(), ref, atol=1e-12)


def test_digits_standardization_and_channels():
    tr = P.digits(size=32, channels=3, dtype=DT).tensors[0]
    assert tr.shape == (1437, 3, 32, 32)
    assert abs(tr.mean().item()) < 1e-10 and abs(tr.std().item() - 1) < 1e-3
    assert torch.equal(tr[:, 0], tr[:, 2])
    # the test split uses the train statistics: same affine map of the raw pixels
    raw_tr = P.digits(size=32, split="train", standardize=False, dtype=DT).tensors[0]
    raw_te = P.digits(size=32, split="test", standardize=False, dtype=DT).tensors[0]
    te = P.digits(size=32, channels=1, split="test", dtype=DT).tensors[0]
    mu, sd = raw_tr.mean(), raw_tr.std()
    assert torch.allclose(te, (raw_te - mu) / sd)
    assert P.digits(size=28).tensors[0].dtype == torch.float32


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        ({"channels": 2}, ValueError, "channels"),
        ({"split": "val"}, ValueError, "split"),
        ({"size": 0}, ValueError, "size"),
        ({"test_fraction": 1.5}, ValueError, "test_fraction"),
        ({"seed": torch.Generator()}, TypeError, "seed"),
        ({"dtype": torch.int64}, TypeError, "dtype"),
    ],
)
def test_digits_rejects_bad_input(kwargs, err, match):
    with pytest.raises(err, match=match):
        P.digits(**kwargs)


# ----------------------------------------------------------------------------- vision
def test_vision_without_root_or_files_raises_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv(P.DATA_ENV, raising=False)
    with pytest.raises(FileNotFoundError, match="CURVLAB_DATA"):
        P.vision("mnist")
    with pytest.raises(FileNotFoundError, match="never downloads") as info:
        P.vision("mnist", root=tmp_path)
    assert "train-images-idx3-ubyte" in str(info.value)
    monkeypatch.setenv(P.DATA_ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):
        P.vision("cifar10")
    with pytest.raises(ValueError, match="unknown data set"):
        P.vision("imagenet", root=tmp_path)
    with pytest.raises(ValueError, match="split"):
        P.vision("mnist", root=tmp_path, split="val")
    with pytest.raises(ValueError, match="channels"):
        P.vision("mnist", root=tmp_path, channels=2)


def _fake_files(root, name):
    _, sub, files, *_ = P.VISION_DATASETS[name]
    (root / sub).mkdir(parents=True)
    for f in files:
        (root / sub / f).write_bytes(b"")


def test_vision_with_files_but_no_torchvision_raises_import_error(tmp_path, monkeypatch):
    _fake_files(tmp_path, "mnist")
    monkeypatch.setitem(sys.modules, "torchvision", None)  # makes the import fail
    monkeypatch.setitem(sys.modules, "torchvision.datasets", None)
    with pytest.raises(ImportError, match="pip install torchvision"):
        P.vision("mnist", root=tmp_path)


def test_vision_opens_torchvision_without_download_and_transforms(tmp_path, monkeypatch):
    calls = {}

    class FakeCIFAR10:
        def __init__(self, root, train, download, transform):
            calls.update(root=root, train=train, download=download)
            self.transform = transform

    fake = types.ModuleType("torchvision")
    fake.datasets = types.SimpleNamespace(CIFAR10=FakeCIFAR10)
    monkeypatch.setitem(sys.modules, "torchvision", fake)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", fake.datasets)
    _fake_files(tmp_path, "cifar10")
    ds = P.vision("cifar10", root=tmp_path, split="test", channels=1, size=16, dtype=DT)
    assert calls == {"root": str(tmp_path), "train": False, "download": False}
    # grey CIFAR: luma of a constant RGB image, standardized with the grey statistics
    img = np.empty((32, 32, 3), dtype=np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = 255, 0, 51
    x = ds.transform(img)
    grey = 0.299 * 1.0 + 0.114 * 0.2
    assert x.shape == (1, 16, 16)
    assert torch.allclose(x, torch.full_like(x, (grey - 0.4809) / 0.2393))


# ----------------------------------------------------------------------------- Rahimi-Recht
@pytest.mark.parametrize(("c", "published", "rtol"), [(30, 29.3, 0.03), (1e4, 15099.0, 0.10)])
@pytest.mark.parametrize("seed", [0, 1])
def test_rahimi_recht_reproduces_the_published_condition_numbers(c, published, rtol, seed):
    p = P.rahimi_recht(c=c, seed=seed)
    A = p.A.numpy()
    cond = np.linalg.cond(A)
    assert abs(cond - published) <= rtol * published
    assert math.isclose(p.cond, cond, rel_tol=1e-9)
    # A = diag(linspace(1, c)) U with U in [0, 1)
    U = A / np.linspace(1, c, 14)[:, None]
    assert A.shape == (14, 12) and U.min() >= 0 and U.max() < 1
    if seed == 0:  # the default seed is close to the published instances
        assert abs(cond - published) < 0.6 if c == 30 else abs(cond - published) < 600


@pytest.mark.parametrize("seed", [0, 5])
def test_rahimi_recht_crossing_rule_is_the_originals(seed):
    A30 = P.rahimi_recht_matrix(30, seed=seed, cond_range="crossing")
    A4 = P.rahimi_recht_matrix(1e4, seed=seed, cond_range="crossing")
    assert np.linalg.cond(A30.numpy()) <= 30
    assert np.linalg.cond(A4.numpy()) >= 1e4


@pytest.mark.parametrize(
    ("c", "window"), [(30, (100.0, 110.0)), (30, (20.0, 40.0)), (1e4, (2000.0, 3000.0))]
)
def test_rahimi_recht_matrix_is_the_first_acceptable_draw(c, window):
    """Re-implementation of the documented procedure: chunks of 4096, first hit in order."""
    gen = torch.Generator().manual_seed(7)
    scale = np.linspace(1, c, 14)[:, None]
    found = None
    while found is None:
        U = torch.rand(4096, 14, 12, generator=gen, dtype=DT).numpy()
        for Ui in U:
            if window[0] <= np.linalg.cond(scale * Ui) <= window[1]:
                found = scale * Ui
                break
    A = P.rahimi_recht_matrix(c, seed=7, cond_range=window)
    np.testing.assert_allclose(A.numpy(), found, rtol=1e-15)


def test_rahimi_recht_problem_data_model_and_loss():
    p = P.rahimi_recht(c=30, seed=3, dtype=DT, cond_range=(20.0, 200.0))
    model, loss_fn, train, test = p
    assert n_params(model) == 338 == 12 * 13 + 13 * 14
    assert [tuple(m.weight.shape) for m in model] == [(13, 12), (14, 13)]
    assert all(m.bias is None for m in model)
    assert len(train.dataset) == 1000 and len(test.dataset) == 250
    assert [len(y) for _, y in train] == [128] * 7 + [104]
    Xt, Yt = first_batch(test)
    assert Xt.shape == (250, 12) and Yt.shape == (250, 14)
    # the targets are exactly X A^T: least squares recovers A from the training data
    A_hat = torch.linalg.lstsq(p.X, p.Y).solution.T
    assert torch.allclose(A_hat, p.A, atol=1e-8)
    assert torch.allclose(Yt, Xt @ p.A.T)
    # a network with W2 W1 = A has zero loss; the initial one does not
    assert loss_fn(model(Xt), Yt) > 1.0
    with torch.no_grad():
        model[0].weight.copy_(torch.eye(13, 12, dtype=DT))
        model[1].weight.copy_(torch.cat([p.A, torch.zeros(14, 1, dtype=DT)], 1))
    assert loss_fn(model(Xt), Yt) < 1e-10
    # weights are N(0, 1) (not PyTorch's default uniform init)
    # (divided by sqrt(width) beyond two layers, as the original)
    w = P.DeepLinear(300, 200, 200, 10, seed=0).state_dict()
    assert abs(w["1.weight"].std().item() - 1 / math.sqrt(200)) < 0.002
    w = P.DeepLinear(300, 300, seed=0)[0].weight
    assert abs(w.std().item() - 1) < 0.01 and abs(w.mean().item()) < 0.01


def test_rahimi_recht_is_deterministic_under_a_seed():
    a, b, c = (P.rahimi_recht(c=30, seed=s, cond_range=(20.0, 200.0)) for s in (11, 11, 12))
    assert torch.equal(a.A, b.A) and torch.equal(a.X, b.X) and torch.equal(a.X_test, b.X_test)
    assert same_state(state(a.model), state(b.model))
    assert torch.equal(first_batch(a.train_loader)[0], first_batch(b.train_loader)[0])
    assert not torch.equal(a.A, c.A)
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    kw = {"cond_range": (20.0, 200.0)}
    assert torch.equal(P.rahimi_recht(seed=g1, **kw).X, P.rahimi_recht(seed=g2, **kw).X)


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        ({"c": 0.5}, ValueError, "c must be"),
        ({"c": float("nan")}, ValueError, "c must be"),
        ({"cond_range": (5.0, 2.0)}, ValueError, "low < high"),
        ({"cond_range": "nearest"}, ValueError, "cond_range"),
        ({"cond_range": 3}, TypeError, "cond_range"),
        ({"seed": "0"}, TypeError, "seed"),
        ({"n_train": 0}, ValueError, "n_train"),
    ],
)
def test_rahimi_recht_rejects_bad_input(kwargs, err, match):
    with pytest.raises(err, match=match):
        P.rahimi_recht(**kwargs)


def test_rahimi_recht_matrix_gives_up_with_a_clear_error():
    with pytest.raises(RuntimeError, match="widen cond_range"):
        P.rahimi_recht_matrix(30, cond_range=(1.0, 1.5), max_draws=4096)


# ----------------------------------------------------------------------------- matrix factorization
def test_matrix_factorization_problem_matches_the_study():
    model, loss_fn, train, test = P.matrix_factorization()
    assert test is None
    M, y = first_batch(train)
    assert M.shape == (40, 100, 100) and len(list(train)) == 1
    assert dict(model.named_parameters()).keys() == {"P", "Q"}
    assert model.P.shape == (100, 5) and model.Q.shape == (5, 100)
    # seed 42 by default, deterministic
    again = P.matrix_factorization()
    assert torch.equal(again.M, M) and torch.equal(again.model.P, model.P)
    assert not torch.equal(P.matrix_factorization(seed=0).M, M)
    # the objective, written out with numpy
    Mn, Pn, Qn = (t.detach().double().numpy() for t in (M, model.P, model.Q))
    ref = np.mean([np.sum((Mi - Pn @ Qn) ** 2) for Mi in Mn]) + 0.01 * (
        np.sum(Pn**2) + np.sum(Qn**2)
    )
    assert math.isclose(loss_fn(model(M), y).item(), ref, rel_tol=1e-5)
    # P and Q can go to two different optimizers
    opt_p = torch.optim.Adam([model.P], lr=0.1)
    opt_q = torch.optim.SGD([model.Q], lr=1e-3)
    q0 = model.Q.detach().clone()
    loss_fn(model(M), y).backward()
    opt_p.step()
    opt_q.step()
    assert not torch.equal(model.Q, q0)


@given(
    m=st.integers(1, 6),
    n=st.integers(1, 6),
    r=st.integers(1, 3),
    b=st.integers(1, 4),
    reg=st.floats(0, 1),
    seed=st.integers(0, 2**31),
)
def test_matrix_factorization_gradient_and_hessian_closed_forms(m, n, r, b, reg, seed):
    p = P.matrix_factorization(n_matrices=b, m=m, n=n, rank=r, reg=reg, seed=seed, dtype=DT)
    model, loss_fn, train, _ = p
    M, y = first_batch(train)
    Pm, Qm = model.P, model.Q
    R = M - Pm @ Qm  # (b, m, n)
    gP, gQ = torch.autograd.grad(loss_fn(model(M), y), [Pm, Qm])
    assert torch.allclose(gP, -2 * (R @ Qm.T).mean(0) + 2 * reg * Pm)
    assert torch.allclose(gQ, -2 * (Pm.T @ R).mean(0) + 2 * reg * Qm)
    # Hessian in the Q block: V -> 2 P^T P V + 2 reg V, through curvlab's operator
    H = cl.HessianOperator(model, loss_fn, [(M, y)], params=[model.Q])
    V = torch.randn(r, n, generator=torch.Generator().manual_seed(seed), dtype=DT)
    ref = 2 * Pm.T @ Pm @ V + 2 * reg * V
    assert torch.allclose(H @ V.reshape(-1), ref.detach().reshape(-1))


def test_matrix_factorization_rejects_bad_input():
    f = P.MatrixFactorization(4, 3, 2)
    with pytest.raises(ValueError, match="shape"):
        f(torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="reg"):
        P.MatrixFactorization(reg=-1.0)
    with pytest.raises(ValueError, match="rank"):
        P.matrix_factorization(rank=0)


# ----------------------------------------------------------------------------- attention
def test_attention_regression_shapes_and_blocks():
    p = P.attention_regression(n_train=200, n_test=30, seed=1)
    model, loss_fn, train, test = p
    assert isinstance(model, nn.MultiheadAttention)
    assert model.in_proj_weight.numel() == 768
    assert {n for n, _ in model.named_parameters()} == {
        "in_proj_weight",
        "in_proj_bias",
        "out_proj.weight",
        "out_proj.bias",
    }
    X, Y = first_batch(train)
    assert X.shape == Y.shape == (64, 10, 16)
    assert len(test.dataset) == 30 and P.attention_regression(n_train=10).test_loader is None
    q = P.attention_regression(n_train=200, n_test=30, seed=1)
    assert torch.equal(q.X, p.X) and same_state(state(q.model), state(p.model))
    assert P.attention_regression(n_train=10, n_test=0).X.shape == (10, 10, 16)


def test_self_attention_is_the_softmax_formula():
    torch.manual_seed(0)
    attn = P.SelfAttention(8, 2).double()
    x = torch.randn(3, 5, 8, dtype=DT)
    Wq, Wk, Wv = attn.in_proj_weight.chunk(3)
    bq, bk, bv = attn.in_proj_bias.chunk(3)
    q, k, v = (x @ W.T + b for W, b in ((Wq, bq), (Wk, bk), (Wv, bv)))
    heads = []
    for h in range(2):
        s = slice(4 * h, 4 * h + 4)
        a = torch.softmax(q[..., s] @ k[..., s].transpose(1, 2) / 2.0, -1)
        heads.append(a @ v[..., s])
    ref = attn.out_proj(torch.cat(heads, -1))
    assert torch.allclose(attn(x), ref)


def test_double_backward_through_attention_regression():
    p = P.attention_regression(n_train=16, seed=2, dtype=DT)
    X, Y = p.X[:8], p.Y[:8]
    params = [p.model.in_proj_weight, p.model.out_proj.weight]
    gen = torch.Generator().manual_seed(0)
    v = [torch.randn(q.shape, generator=gen, dtype=DT) for q in params]
    Hv = hvp_double_backward(p.model, p.loss_fn, X, Y, params, v)
    fd = hvp_finite_differences(p.model, p.loss_fn, X, Y, params, v)
    for a, b in zip(Hv, fd, strict=True):
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-8)
    # and through curvlab's operator on the in_proj_weight block (768 x 768)
    H = cl.HessianOperator(p.model, p.loss_fn, [(X, Y)], params=[p.model.in_proj_weight])
    assert H.shape == (768, 768)
    fd_in = hvp_finite_differences(p.model, p.loss_fn, X, Y, params[:1], v[:1])[0]
    assert torch.allclose(H @ v[0].reshape(-1), fd_in.reshape(-1), rtol=1e-6, atol=1e-8)
    # eval mode (where nn.MultiheadAttention has a fused fast path) and forward-over-reverse
    p.model.eval()
    H = cl.HessianOperator(
        p.model, p.loss_fn, [(X, Y)], params=[p.model.in_proj_weight], mode="fwd-rev"
    )
    assert torch.allclose(H @ v[0].reshape(-1), fd_in.reshape(-1), rtol=1e-6, atol=1e-8)


# ----------------------------------------------------------------------------- transformer
@given(
    d_head=st.integers(1, 4),
    nhead=st.integers(1, 3),
    T=st.integers(1, 6),
    causal=st.booleans(),
    seed=st.integers(0, 2**31),
)
def test_math_attention_matches_torch_multihead_attention(d_head, nhead, T, causal, seed):
    d = d_head * nhead
    gen = torch.Generator().manual_seed(seed)
    ours = P.MathMultiheadAttention(d, nhead, causal=causal).double()
    ref = nn.MultiheadAttention(d, nhead, batch_first=True).double()
    with torch.no_grad():
        for p in ours.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=DT))
        ref.in_proj_weight.copy_(ours.in_proj.weight)
        ref.in_proj_bias.copy_(ours.in_proj.bias)
        ref.out_proj.weight.copy_(ours.out_proj.weight)
        ref.out_proj.bias.copy_(ours.out_proj.bias)
    x = torch.randn(2, T, d, generator=gen, dtype=DT)
    mask = torch.ones(T, T, dtype=torch.bool).triu(1) if causal else None
    expected = ref(x, x, x, attn_mask=mask, need_weights=False)[0]
    assert torch.allclose(ours(x), expected, atol=1e-10)


def test_transformer_inputs_outputs_and_errors():
    torch.manual_seed(0)
    feats = P.Transformer(in_features=8, out_features=3)
    assert feats(torch.randn(4, 6, 8)).shape == (4, 3)
    imgs = torch.randn(4, 2, 5, 3)  # rows as tokens: 5 tokens of 2 * 3 features
    rows = imgs.permute(0, 2, 1, 3).reshape(4, 5, 6)
    img_model = P.Transformer(in_features=6, out_features=3)
    assert torch.allclose(img_model(imgs), img_model(rows))
    lm = P.Transformer(vocab_size=11, out_features=11, causal=True, pool=None)
    tokens = torch.randint(0, 11, (2, 7))
    out = lm(tokens)
    assert out.shape == (2, 7, 11)
    # causal: changing the last token leaves the earlier outputs unchanged
    tokens2 = tokens.clone()
    tokens2[:, -1] = (tokens2[:, -1] + 1) % 11
    assert torch.allclose(lm(tokens2)[:, :-1], out[:, :-1], atol=1e-6)
    with pytest.raises(ValueError, match="exactly one"):
        P.Transformer(in_features=3, vocab_size=3)
    with pytest.raises(ValueError, match="max_len"):
        P.Transformer(in_features=2, max_len=4)(torch.zeros(1, 5, 2))
    with pytest.raises(ValueError, match="divisible"):
        P.MathMultiheadAttention(5, 2)
    with pytest.raises(ValueError, match="pool"):
        P.Transformer(in_features=2, pool="max")


def test_double_backward_through_the_transformer():
    p = P.image_classification("transformer", n_train=8, seed=0, dtype=DT)
    X, y = first_batch(p.train_loader)
    model = p.model
    params = [model.blocks[0].attn.in_proj.weight, model.blocks[1].ff[0].weight]
    gen = torch.Generator().manual_seed(1)
    v = [torch.randn(q.shape, generator=gen, dtype=DT) for q in params]
    Hv = hvp_double_backward(model, p.loss_fn, X, y, params, v)
    fd = hvp_finite_differences(model, p.loss_fn, X, y, params, v)
    for a, b in zip(Hv, fd, strict=True):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-7)


# ----------------------------------------------------------------------------- LeNet, MLP, ResNet
def _conv(cin, cout, k):
    return cin * cout * k * k + cout


def test_lenet5_parameter_counts_and_structure():
    body = _conv(1, 6, 5) + _conv(6, 16, 5) + (400 * 120 + 120) + (120 * 84 + 84)
    for variant in ("tanh", "relu"):
        m = P.LeNet5(variant)
        assert n_params(m) == body + 850
        assert m(torch.zeros(2, 1, 32, 32)).shape == (2, 10)
        assert P.LeNet5(variant, input_size=28)(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert isinstance(P.LeNet5("tanh").pool, nn.AvgPool2d)
    assert isinstance(P.LeNet5("tanh").act, nn.Tanh)
    assert isinstance(P.LeNet5("relu").pool, nn.MaxPool2d)
    bn = P.LeNet5("batchnorm", in_channels=3)
    n_bn = 2 * (6 + 16 + 120 + 84)
    assert n_params(bn) == body + 850 + (3 - 1) * 6 * 25 + n_bn
    last = list(bn.children())[-1]
    assert last is bn.fc3 is bn.last_layer and n_params(last) == 850 == 84 * 10 + 10
    assert [n for n, _ in bn.named_parameters()][-2:] == ["fc3.weight", "fc3.bias"]
    assert sum(isinstance(c, nn.BatchNorm1d | nn.BatchNorm2d) for c in bn.modules()) == 4
    with pytest.raises(ValueError, match="variant"):
        P.LeNet5("sigmoid")
    with pytest.raises(ValueError, match="input_size"):
        P.LeNet5(input_size=64)


def test_mlp_and_resnet_shapes_and_counts():
    e1 = P.MLP(1, [256] * 4, 1)
    assert n_params(e1) == (256 + 256) + 3 * (256 * 256 + 256) + (256 + 1)
    assert sum(isinstance(c, nn.ReLU) for c in e1) == 4
    e2 = P.MLP(784, [784], 10)
    assert n_params(e2) == 784 * 784 + 784 + 7850
    assert e2(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    assert isinstance(P.MLP(2, [3], 1, activation="tanh")[2], nn.Tanh)
    with pytest.raises(ValueError, match="activation"):
        P.MLP(2, [3], 1, activation="swishy")
    with pytest.raises(ValueError, match="layer sizes"):
        P.MLP(2, [0], 1)
    net = P.ResNet(in_channels=3, widths=(4, 8), blocks=(1, 2))
    assert net(torch.zeros(2, 3, 16, 16)).shape == (2, 10)
    stem = 3 * 4 * 9 + 2 * 4
    block = lambda ci, co, proj: ci * co * 9 + co * co * 9 + 4 * co + proj * (ci * co + 2 * co)  # noqa: E731
    expected = stem + block(4, 4, 0) + block(4, 8, 1) + block(8, 8, 0) + 8 * 10 + 10
    assert n_params(net) == expected
    with pytest.raises(ValueError, match="blocks"):
        P.ResNet(widths=(4, 8), blocks=(1,))
    with pytest.raises(ValueError, match="widths"):
        P.ResNet(widths=())


# ----------------------------------------------------------------------------- sinusoids
def test_sinusoids_study_e_target_and_its_spectrum():
    p = P.sinusoids(dtype=DT)
    x, y = p.x[:, 0].numpy(), p.y[:, 0].numpy()
    np.testing.assert_allclose(x, np.arange(200) / 200)
    coef = np.abs(np.fft.rfft(y)) / 100  # |h_hat(k)| / (N / 2)
    np.testing.assert_allclose(coef[[1, 2, 4, 8]], [0.25, 0.5, 0.75, 1.0], atol=1e-12)
    assert np.all(np.delete(coef, [1, 2, 4, 8]) < 1e-12)
    assert n_params(p.model) == (256 + 256) + 3 * (256 * 256 + 256) + 257
    X, Y = first_batch(p.train_loader)
    assert X.shape == (20, 1) and len(p.train_loader) == 10
    Xt, Yt = first_batch(p.test_loader)
    assert torch.equal(Xt, p.x) and torch.equal(Yt, p.y)


def test_sinusoids_rahaman_preset_and_overrides():
    p = P.sinusoids(preset="rahaman", seed=3, dtype=DT)
    assert p.frequencies.tolist() == list(range(5, 55, 5))
    assert torch.all((p.phases >= 0) & (p.phases < 2 * math.pi))
    assert torch.equal(P.sinusoids(preset="rahaman", seed=3).phases, p.phases)
    assert not torch.equal(P.sinusoids(preset="rahaman", seed=4).phases, p.phases)
    # a single sinusoid with a phase: y = a sin(2 pi f x + phi)
    q = P.sinusoids(amplitudes=[2.0], frequencies=[3], phases=[0.5], n=50, dtype=DT)
    assert torch.allclose(q.y, 2 * torch.sin(2 * math.pi * 3 * q.x + 0.5))
    with pytest.raises(ValueError, match="n/2"):
        P.sinusoids(frequencies=[1, 2, 4, 100])
    with pytest.raises(ValueError, match="same length"):
        P.sinusoids(amplitudes=[1.0, 2.0])
    with pytest.raises(ValueError, match="preset"):
        P.sinusoids(preset="xu")
    with pytest.raises(ValueError, match="one phase"):
        P.sinusoids(phases=[0.0])


# ----------------------------------------------------------------------------- image classification
@pytest.mark.parametrize("name", sorted(P.CLASSIFIERS))
def test_image_classification_builds_every_network_on_digits(name):
    p = P.image_classification(name, n_train=32, n_test=16, batch_size=16, seed=0)
    model, loss_fn, train, test = p
    X, y = first_batch(train)
    assert X.shape[0] == 16 and X.shape[1] == p.channels and X.shape[-1] == p.size
    assert isinstance(loss_fn, nn.CrossEntropyLoss)
    loss = loss_fn(model(X), y)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert len(test.dataset) == 16


def test_image_classification_defaults_determinism_and_errors(tmp_path, monkeypatch):
    p = P.image_classification("lenet5-bn", n_train=64)
    assert p.size == 32 and p.channels == 3 and n_params(p.model.fc3) == 850
    assert P.image_classification("mlp", n_train=8).size == 28
    assert P.image_classification("transformer", n_train=8).size == 8
    a = P.image_classification("lenet5-tanh", n_train=50, seed=5)
    b = P.image_classification("lenet5-tanh", n_train=50, seed=5)
    assert same_state(state(a.model), state(b.model))
    assert torch.equal(first_batch(a.train_loader)[0], first_batch(b.train_loader)[0])
    own = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    q = P.image_classification(own, n_train=8)
    assert q.model is own and q.size == 8
    monkeypatch.delenv(P.DATA_ENV, raising=False)
    with pytest.raises(FileNotFoundError):
        P.image_classification(data="mnist", root=tmp_path)
    with pytest.raises(ValueError, match="model"):
        P.image_classification("vgg")
    with pytest.raises(TypeError, match="model"):
        P.image_classification(3)
    with pytest.raises(ValueError, match="data"):
        P.image_classification(data="svhn")
    with pytest.raises(ValueError, match="exceeds"):
        P.image_classification(n_train=10**6)


# ----------------------------------------------------------------------------- global RNG
def test_problems_never_touch_the_global_rng():
    before = torch.random.get_rng_state()
    problems = [
        P.rahimi_recht(c=30, seed=1, cond_range=(20.0, 200.0)),
        P.matrix_factorization(m=5, n=5),
        P.attention_regression(n_train=8, n_test=4),
        P.sinusoids(preset="rahaman", hidden=[4]),
        P.image_classification("lenet5-bn", n_train=8),
    ]
    for p in problems:
        for loader in (p.train_loader, p.test_loader):
            if loader is not None:
                for _ in loader:
                    pass
    assert torch.equal(before, torch.random.get_rng_state())
