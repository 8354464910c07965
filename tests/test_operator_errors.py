"""Bad input gets a clear error; the determinism check fires where it should."""

import pytest
import torch
from test_operators import make_problem
from torch import nn

import curvlab as cl

DT = torch.float64


@pytest.fixture
def problem():
    return make_problem("ce", "mlp", 3, 8, 0, [4, 4])


def test_non_scalar_loss(problem):
    model, data = problem

    def per_sample(out, y):
        return nn.functional.cross_entropy(out, y, reduction="none")

    with pytest.raises(ValueError, match="not a scalar"):
        cl.HessianOperator(model, per_sample, data)


def test_reduction_none(problem):
    model, data = problem
    with pytest.raises(ValueError, match="reduction='none'"):
        cl.HessianOperator(model, nn.CrossEntropyLoss(reduction="none"), data)


def test_no_trainable_parameters(problem):
    model, data = problem
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        cl.HessianOperator(model, nn.CrossEntropyLoss(), data)


def test_empty_data(problem):
    model, _ = problem
    with pytest.raises(ValueError, match="empty"):
        cl.HessianOperator(model, nn.CrossEntropyLoss(), [])
    empty = (torch.zeros(0, 4, dtype=DT), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="empty"):
        cl.HessianOperator(model, nn.CrossEntropyLoss(), [empty])


def test_batch_not_a_pair(problem):
    model, data = problem
    X, y = data[0]
    with pytest.raises(TypeError, match=r"pair \(X, y\)"):
        cl.HessianOperator(model, nn.CrossEntropyLoss(), [X])
    with pytest.raises(TypeError, match="length 3"):
        cl.HessianOperator(model, nn.CrossEntropyLoss(), [(X, y, y)])


def test_one_shot_iterator(problem):
    model, data = problem
    with pytest.raises(TypeError, match="one-shot iterator"):
        cl.HessianOperator(model, nn.CrossEntropyLoss(), iter(data))
    with pytest.raises(TypeError, match="one-shot iterator"):
        cl.HessianOperator(model, nn.CrossEntropyLoss(), (b for b in data))


def test_vector_wrong_length_dtype_device(problem):
    model, data = problem
    H = cl.HessianOperator(model, nn.CrossEntropyLoss(), data)
    n = H.shape[0]
    with pytest.raises(ValueError, match="rows"):
        H @ torch.ones(n + 1, dtype=DT)
    with pytest.raises(TypeError, match="dtype"):
        H @ torch.ones(n, dtype=torch.float32)
    with pytest.raises(ValueError, match=r"\(n,\) or a matrix"):
        H @ torch.ones(n, 1, 1, dtype=DT)
    with pytest.raises(TypeError, match="torch tensors"):
        H @ [1.0] * n
    meta = torch.ones(n, dtype=DT, device="meta")
    with pytest.raises(ValueError, match="is on meta"):
        H @ meta


def test_unknown_parameter_names(problem):
    model, data = problem
    with pytest.raises(ValueError, match="no parameter of the model matches 'fc.weight'"):
        cl.HessianOperator(model, nn.CrossEntropyLoss(), data, params=["fc.weight"])


def test_unknown_mode(problem):
    model, data = problem
    with pytest.raises(ValueError, match="mode"):
        cl.HessianOperator(model, nn.CrossEntropyLoss(), data, mode="fast")


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
    with pytest.raises(ValueError, match="mc_samples"):
        cl.GGNOperator(model, nn.CrossEntropyLoss(), data, mc_samples=-1)
    with pytest.raises(TypeError, match="seed"):
        cl.GGNOperator(model, nn.CrossEntropyLoss(), data, mc_samples=1, seed="a")


def test_nan_in_product_names_batch(problem):
    model, data = problem
    X, y = data[1]
    bad = X.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="batch 1"):
        cl.HessianOperator(model, nn.CrossEntropyLoss(), [data[0], (bad, y)])
    H = cl.HessianOperator(
        model, nn.CrossEntropyLoss(), [data[0], (bad, y)], check_deterministic=False
    )
    with pytest.raises(ValueError, match="not finite on batch 1"):
        H @ torch.ones(H.shape[0], dtype=DT)


def test_mixed_parameter_dtypes(problem):
    model, data = problem
    model[2].float()
    with pytest.raises(ValueError, match="share dtype"):
        cl.HessianOperator(model, nn.CrossEntropyLoss(), data)


def test_changing_data_size_detected(problem):
    model, data = problem

    class Shrinking:
        def __init__(self):
            self.calls = 0

        def __iter__(self):
            self.calls += 1
            return iter(data if self.calls == 1 else data[:1])

    H = cl.HessianOperator(model, nn.CrossEntropyLoss(), Shrinking(), check_deterministic=False)
    with pytest.raises(ValueError, match="8 samples at construction but 4 now"):
        H @ torch.ones(H.shape[0], dtype=DT)


def _dropout_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.5), nn.Tanh(), nn.Linear(16, 3)).to(DT)


def test_determinism_check_fires_on_dropout_in_train_mode():
    model = _dropout_model().train()
    _, data = make_problem("ce", "mlp", 3, 8, 0)
    with pytest.raises(ValueError, match=r"dropout layers \['1'\] in train mode"):
        cl.HessianOperator(model, nn.CrossEntropyLoss(), data)
    # skipping the check is the user's explicit choice
    cl.HessianOperator(model, nn.CrossEntropyLoss(), data, check_deterministic=False)
    # the check never flips the mode behind the user's back
    assert model.training


def test_determinism_check_quiet_in_eval_mode():
    model = _dropout_model().eval()
    _, data = make_problem("ce", "mlp", 3, 8, 0)
    H = cl.HessianOperator(model, nn.CrossEntropyLoss(), data)
    assert not model.training
    assert torch.isfinite(H @ torch.ones(H.shape[0], dtype=DT)).all()


def test_determinism_check_fires_on_shuffled_batchnorm():
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Linear(6, 3)).to(DT)
    _, data = make_problem("ce", "mlp", 3, 32, 0)
    X, y = data[0]
    loader = DataLoader(TensorDataset(X, y), batch_size=8, shuffle=True)
    with pytest.warns(UserWarning, match="BatchNorm"):
        with pytest.raises(ValueError, match="shuffl"):
            cl.HessianOperator(model, nn.CrossEntropyLoss(), loader)
    model.eval()  # the order matters to the graph cache even without batch statistics
    with pytest.raises(ValueError, match="shuffl"):
        cl.HessianOperator(model, nn.CrossEntropyLoss(), loader)


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
