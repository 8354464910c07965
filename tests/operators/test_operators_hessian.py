"""HessianOperator (curvlab/operators/hessian.py) against dense float64 references; its graph
cache."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from operator_problems import DT, LOSSES, MODES, make_loss, make_problem
from reference import dense_hessian, flat_params
from torch import nn

import curvlab as cl


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


def test_float32_operator_close_to_float64():
    model, data = make_problem("ce", "mlp", 4, 12, 9)
    H64 = cl.HessianOperator(model, nn.CrossEntropyLoss(), data).to_dense()
    model32 = model.float()
    data32 = [(X.float(), y) for X, y in data]
    H32 = cl.HessianOperator(model32, nn.CrossEntropyLoss(), data32)
    assert H32.dtype == torch.float32
    torch.testing.assert_close(H32.to_dense().double(), H64, rtol=1e-4, atol=1e-5)


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


def test_fwd_rev_custom_mse_reports_fallback():
    model, data = make_problem("mse", "mlp", 3, 8, 0)

    def custom(out, y):
        return nn.functional.mse_loss(out, y)

    H = cl.HessianOperator(model, custom, data, mode="fwd-rev")
    v = torch.ones(H.shape[0], dtype=DT)
    try:
        hv = H @ v
    except RuntimeError as err:  # torch versions where forward-over-reverse fails here
        assert "mode='rev-rev'" in str(err)
    else:
        ref = cl.HessianOperator(model, custom, data) @ v
        torch.testing.assert_close(hv, ref)
