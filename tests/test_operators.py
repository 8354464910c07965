"""Curvature operators against independent dense references (float64)."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from reference import dense_empirical_fisher, dense_ggn, dense_hessian, flat_params
from torch import nn

import curvlab as cl

DT = torch.float64
LOSSES = ["ce", "mse", "bce"]
MODES = ["rev-rev", "fwd-rev"]


def make_loss(kind, reduction="mean"):
    return {
        "ce": nn.CrossEntropyLoss,
        "mse": nn.MSELoss,
        "bce": nn.BCEWithLogitsLoss,
    }[kind](reduction=reduction)


def make_targets(kind, n, out_dim, gen):
    if kind == "ce":
        return torch.randint(0, out_dim, (n,), generator=gen)
    if kind == "mse":
        return torch.randn(n, out_dim, generator=gen, dtype=DT)
    return torch.randint(0, 2, (n, out_dim), generator=gen).to(DT)


def make_mlp(in_dim, width, out_dim, seed, act=nn.Tanh):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(in_dim, width), act(), nn.Linear(width, out_dim)).to(DT)


class SmallCNN(nn.Module):
    def __init__(self, channels, out_dim):
        super().__init__()
        self.conv = nn.Conv2d(1, channels, 3)
        self.fc = nn.Linear(channels * 4, out_dim)

    def forward(self, x):
        h = torch.tanh(self.conv(x))
        h = nn.functional.avg_pool2d(h, 2)
        return self.fc(h.flatten(1))


def make_problem(kind, arch, width, n, seed, batch_sizes=None):
    gen = torch.Generator().manual_seed(seed)
    out_dim = 3
    if arch == "mlp":
        model = make_mlp(4, width, out_dim, seed)
        X = torch.randn(n, 4, generator=gen, dtype=DT)
    else:
        torch.manual_seed(seed)
        model = SmallCNN(width, out_dim).to(DT)
        X = torch.randn(n, 1, 6, 6, generator=gen, dtype=DT)
    y = make_targets(kind, n, out_dim, gen)
    sizes = batch_sizes or [n]
    data, start = [], 0
    for b in sizes:
        data.append((X[start : start + b], y[start : start + b]))
        start += b
    return model, data


def split_points(n, cuts):
    pts = sorted(set(c % (n - 1) + 1 for c in cuts))
    sizes, prev = [], 0
    for p in pts + [n]:
        sizes.append(p - prev)
        prev = p
    return sizes


@given(
    kind=st.sampled_from(LOSSES),
    arch=st.sampled_from(["mlp", "cnn"]),
    width=st.integers(1, 5),
    seed=st.integers(0, 10_000),
    mode=st.sampled_from(MODES),
    reduction=st.sampled_from(["mean", "sum"]),
)
def test_hessian_matches_dense(kind, arch, width, seed, mode, reduction):
    model, data = make_problem(kind, arch, width, 9, seed, [4, 5])
    loss = make_loss(kind, reduction)
    H = cl.HessianOperator(model, loss, data, mode=mode)
    ref = dense_hessian(model, loss, data)
    torch.testing.assert_close(H.to_dense(), ref, rtol=1e-9, atol=1e-10)


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


@given(
    kind=st.sampled_from(LOSSES),
    width=st.integers(1, 5),
    seed=st.integers(0, 10_000),
    mode=st.sampled_from(MODES),
    reduction=st.sampled_from(["mean", "sum"]),
)
def test_empirical_fisher_matches_dense(kind, width, seed, mode, reduction):
    model, data = make_problem(kind, "mlp", width, 7, seed, [2, 5])
    loss = make_loss(kind, reduction)
    F = cl.EmpiricalFisherOperator(model, loss, data, mode=mode)
    ref = dense_empirical_fisher(model, loss, data)
    torch.testing.assert_close(F.to_dense(), ref, rtol=1e-9, atol=1e-10)


@given(
    kind=st.sampled_from(LOSSES),
    seed=st.integers(0, 10_000),
    cuts_a=st.lists(st.integers(0, 100), min_size=0, max_size=4),
    cuts_b=st.lists(st.integers(0, 100), min_size=1, max_size=5),
    which=st.sampled_from(["hessian", "ggn", "ef"]),
)
def test_batch_split_invariance(kind, seed, cuts_a, cuts_b, which):
    n = 11
    cls = {
        "hessian": cl.HessianOperator,
        "ggn": cl.GGNOperator,
        "ef": cl.EmpiricalFisherOperator,
    }[which]
    model, data_a = make_problem(
        kind, "mlp", 3, n, seed, split_points(n, cuts_a) if cuts_a else None
    )
    _, data_b = make_problem(kind, "mlp", 3, n, seed, split_points(n, cuts_b))
    loss = make_loss(kind)
    A = cls(model, loss, data_a).to_dense()
    B = cls(model, loss, data_b).to_dense()
    torch.testing.assert_close(A, B, rtol=1e-10, atol=1e-12)


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


@pytest.mark.parametrize("mode", MODES)
def test_parameter_subset_is_sub_block(mode):
    model, data = make_problem("ce", "mlp", 4, 9, 5, [9])
    loss = nn.CrossEntropyLoss()
    full = cl.HessianOperator(model, loss, data, mode=mode).to_dense()
    names, _ = flat_params(model)
    sizes = [p.numel() for p in model.parameters()]
    offsets = np.cumsum([0] + sizes)
    # select the last layer by names, by module and by tensors: all the same block
    sel = [2, 3]
    idx = torch.cat([torch.arange(offsets[i], offsets[i + 1]) for i in sel])
    block = full[idx][:, idx]
    for params in (["2.*"], model[2], [model[2].weight, model[2].bias]):
        sub = cl.HessianOperator(model, loss, data, params=params, mode=mode)
        assert sub.param_names == ["2.weight", "2.bias"]
        torch.testing.assert_close(sub.to_dense(), block)
    # a non-contiguous selection keeps the model's order
    sub = cl.HessianOperator(model, loss, data, params=["2.bias", "0.weight"], mode=mode)
    idx = torch.cat([torch.arange(offsets[0], offsets[1]), torch.arange(offsets[3], offsets[4])])
    torch.testing.assert_close(sub.to_dense(), full[idx][:, idx])


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


def test_inputs_as_tuple_and_dict():
    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(3, 2)
            self.b = nn.Linear(2, 2)

        def forward(self, x, z):
            return torch.tanh(self.a(x)) * self.b(z)

    torch.manual_seed(0)
    model = TwoInputs().to(DT)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(6, 3, generator=gen, dtype=DT)
    z = torch.randn(6, 2, generator=gen, dtype=DT)
    y = torch.randint(0, 2, (6,), generator=gen)
    loss = nn.CrossEntropyLoss()
    for mode in MODES:
        a = cl.HessianOperator(model, loss, [((x, z), y)], mode=mode).to_dense()
        b = cl.HessianOperator(model, loss, [({"x": x, "z": z}, y)], mode=mode).to_dense()
        torch.testing.assert_close(a, b)
        g = cl.GGNOperator(model, loss, [({"x": x, "z": z}, y)], mode=mode)
        assert torch.isfinite(g.to_dense()).all()


def test_dataloader_and_custom_callable_loss():
    from torch.utils.data import DataLoader, TensorDataset

    model, data = make_problem("mse", "mlp", 3, 10, 4)
    X, y = data[0]
    loader = DataLoader(TensorDataset(X, y), batch_size=3)  # batches 3, 3, 3, 1

    def my_loss(out, target):  # a callable without a .reduction attribute: a mean
        return ((out - target) ** 4).mean()

    H = cl.HessianOperator(model, my_loss, loader)
    assert H.num_data == 10
    ref = dense_hessian(model, my_loss, data)
    torch.testing.assert_close(H.to_dense(), ref)
    G = cl.GGNOperator(model, my_loss, loader).to_dense()
    torch.testing.assert_close(G, dense_ggn(model, my_loss, data))


def test_float32_operator_close_to_float64():
    model, data = make_problem("ce", "mlp", 4, 12, 9)
    H64 = cl.HessianOperator(model, nn.CrossEntropyLoss(), data).to_dense()
    model32 = model.float()
    data32 = [(X.float(), y) for X, y in data]
    H32 = cl.HessianOperator(model32, nn.CrossEntropyLoss(), data32)
    assert H32.dtype == torch.float32
    torch.testing.assert_close(H32.to_dense().double(), H64, rtol=1e-4, atol=1e-5)


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


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_operator_matches_cpu():
    model, data = make_problem("ce", "mlp", 4, 10, 2)
    cpu = cl.HessianOperator(model, nn.CrossEntropyLoss(), data).to_dense()
    gpu_model = model.to("cuda")
    gpu = cl.HessianOperator(gpu_model, nn.CrossEntropyLoss(), data)  # data moved to the device
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.to_dense().cpu(), cpu)


@pytest.mark.parametrize("budget", [0.0, 1e-3, 256.0])
def test_graph_cache_is_exact_and_follows_parameter_updates(budget):
    model, data = make_problem("ce", "cnn", 3, 12, 4, [5, 7])
    loss = nn.CrossEntropyLoss()
    H = cl.HessianOperator(model, loss, data, graph_cache_mb=budget)
    gen = torch.Generator().manual_seed(0)
    V = torch.randn(H.shape[0], 3, generator=gen, dtype=DT)
    first = H @ V
    torch.testing.assert_close(H @ V, first, rtol=0, atol=0)  # reused graphs: same numbers
    torch.testing.assert_close(H @ V[:, 0], first[:, 0], rtol=1e-12, atol=1e-14)
    assert (len(H._graphs) == 2) == (budget == 256.0)
    # with every graph kept, products run as one backward pass through their sum
    assert (H._total is not None) == (budget == 256.0)
    # an optimizer step changes the parameters in place: the operator follows them
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    opt.zero_grad()
    loss(model(data[0][0]), data[0][1]).backward()
    opt.step()
    fresh = cl.HessianOperator(model, loss, data, graph_cache_mb=0)
    torch.testing.assert_close(H @ V, fresh @ V, rtol=1e-12, atol=1e-14)
    assert not torch.allclose(fresh @ V, first)
    H.clear_cache()
    assert H._graph_bytes == 0


def test_graph_cache_budget_must_be_non_negative():
    model, data = make_problem("ce", "mlp", 3, 8, 0)
    with pytest.raises(ValueError, match="graph_cache_mb"):
        cl.HessianOperator(model, nn.CrossEntropyLoss(), data, graph_cache_mb=-1)


def test_batch_columns_default_and_validation():
    mlp, data = make_problem("ce", "mlp", 3, 8, 0)
    assert cl.HessianOperator(mlp, nn.CrossEntropyLoss(), data).batch_columns is True
    cnn, cdata = make_problem("ce", "cnn", 2, 8, 0)
    assert cl.GGNOperator(cnn, nn.CrossEntropyLoss(), cdata).batch_columns is False
    with pytest.raises(TypeError, match="batch_columns"):
        cl.HessianOperator(mlp, nn.CrossEntropyLoss(), data, batch_columns="yes")


@pytest.mark.parametrize("budget", [0.0, 256.0])
def test_looped_columns_keep_or_free_the_graph(budget):
    # looped columns with kept graphs give the batched numbers and keep working on reuse
    model, data = make_problem("mse", "cnn", 3, 9, 1, [4, 5])
    loss = nn.MSELoss()
    H_loop = cl.HessianOperator(model, loss, data, graph_cache_mb=budget, batch_columns=False)
    H_vmap = cl.HessianOperator(model, loss, data, graph_cache_mb=budget, batch_columns=True)
    gen = torch.Generator().manual_seed(2)
    V = torch.randn(H_loop.shape[0], 4, generator=gen, dtype=DT)
    for _ in range(2):
        torch.testing.assert_close(H_loop @ V, H_vmap @ V, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(H_loop @ V, dense_hessian(model, loss, data) @ V)
