"""Parameter selection and flat-vector conversions."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from curvlab._params import flatten, num_params, select_params, unflatten, unflatten_dict


@given(
    shapes=st.lists(st.lists(st.integers(1, 4), min_size=0, max_size=3), min_size=1, max_size=5),
    k=st.integers(1, 3),
)
def test_flatten_unflatten_roundtrip(shapes, k):
    gen = torch.Generator().manual_seed(0)
    ts = [torch.randn(tuple(s), generator=gen) for s in shapes]
    flat = flatten(ts)
    assert flat.shape == (num_params(ts),)
    back = unflatten(flat, ts)
    for a, b in zip(ts, back):
        assert torch.equal(a, b)
    # matrices: columns are vectors
    M = torch.stack([flat * (j + 1) for j in range(k)], dim=1)
    parts = unflatten(M, ts)
    for j in range(k):
        for a, b in zip(ts, parts):
            assert torch.equal(b[j], a * (j + 1))
    d = unflatten_dict(flat, {str(i): t for i, t in enumerate(ts)})
    assert list(d) == [str(i) for i in range(len(ts))]


def test_unflatten_errors():
    with pytest.raises(ValueError, match="entries"):
        unflatten(torch.ones(3), [torch.ones(2)])
    with pytest.raises(ValueError, match="vector"):
        unflatten(torch.ones(2, 1, 1), [torch.ones(2)])
    with pytest.raises(ValueError, match="no tensors"):
        flatten([])


def test_select_params_variants():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    names, ts = select_params(model)
    assert names == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert select_params(model, model[2])[0] == ["2.weight", "2.bias"]
    assert select_params(model, [model[2].bias, model[0].weight])[0] == ["0.weight", "2.bias"]
    assert select_params(model, "*.bias")[0] == ["0.bias", "2.bias"]
    assert select_params(model, ["2.weight"])[1][0] is model[2].weight
    model[0].weight.requires_grad_(False)
    assert select_params(model)[0] == ["0.bias", "2.weight", "2.bias"]
    with pytest.raises(ValueError, match="requires_grad=False"):
        select_params(model, ["0.weight"])


def test_select_params_errors():
    model = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="no parameter of the model matches 'fc.weight'"):
        select_params(model, ["fc.weight"])
    with pytest.raises(ValueError, match="not a parameter of the model"):
        select_params(model, [torch.ones(2, requires_grad=True)])
    with pytest.raises(ValueError, match="not a submodule"):
        select_params(model, nn.Linear(2, 2))
    with pytest.raises(TypeError, match="Module"):
        select_params("model")
    with pytest.raises(ValueError, match="empty"):
        select_params(model, [])
    with pytest.raises(TypeError):
        select_params(model, [1, 2])
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        select_params(model)
