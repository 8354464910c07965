"""The data contract (curvlab/risk.py), checked through every consumer so that copies cannot drift.

Consumers: ``EmpiricalRisk`` itself, the three model-based operators, ``landscape.line`` and
the spectral-bias tracker (for what it shares: inputs, dtypes, outputs). References are dense
float64 ``torch.func`` computations and per-sample loops written here or in ``reference.py``.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from operator_problems import LOSSES, MODES, make_loss, make_problem, split_points
from reference import dense_empirical_fisher, dense_ggn, dense_hessian, flat_params, risk_fn
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

import curvlab as cl
import curvlab.landscape as ls
from curvlab.fourier import SpectralBiasTracker

DT = torch.float64
OPERATORS = [cl.HessianOperator, cl.GGNOperator, cl.EmpiricalFisherOperator]


def mlp(seed, width=5, d_in=4, d_out=3, act=nn.Tanh, dtype=DT):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d_in, width), act(), nn.Linear(width, d_out)).to(dtype)


def ce_tensors(n=24, seed=0, dtype=DT):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=gen, dtype=dtype), torch.randint(0, 3, (n,), generator=gen)


def consume(consumer, model, loss_fn, data, **kw):
    """Build the consumer on (model, loss_fn, data); return a value that uses the data."""
    if consumer == "risk":
        return cl.EmpiricalRisk(model, loss_fn, data, **kw).evaluate().loss
    if consumer == "line":
        n = sum(p.numel() for p in model.parameters())
        d = torch.zeros(n, dtype=next(model.parameters()).dtype)
        return ls.line(model, loss_fn, data, d, steps=3, progress=False, **kw).loss[1]
    op = consumer(model, loss_fn, data, **kw)
    return op @ torch.ones(op.shape[0], dtype=op.dtype)


CONSUMERS = ["risk", *OPERATORS, "line"]
# the consumers that take any callable loss (the empirical Fisher needs a known likelihood:
# tests/operators/test_operators_losses.py)
ANY_LOSS_CONSUMERS = ["risk", cl.HessianOperator, cl.GGNOperator, "line"]


def consumer_id(c):
    return c if isinstance(c, str) else c.__name__


DENSE = {
    cl.HessianOperator: dense_hessian,
    cl.GGNOperator: dense_ggn,
    cl.EmpiricalFisherOperator: dense_empirical_fisher,
}


def consume_all(consumer, model, loss_fn, data, **kw):
    """Everything the consumer computes from the data: the operator as a dense matrix, the risk's
    loss and gradient, the whole line along a fixed random direction."""
    if consumer == "risk":
        loss, grad = cl.EmpiricalRisk(model, loss_fn, data, **kw).loss_and_gradient()
        return torch.cat([loss.reshape(1).to(grad.dtype), grad])
    if consumer == "line":
        p = next(model.parameters())
        n = sum(q.numel() for q in model.parameters())
        d = torch.randn(n, dtype=p.dtype, generator=torch.Generator().manual_seed(0))
        return ls.line(model, loss_fn, data, d, steps=5, progress=False, **kw).loss
    return consumer(model, loss_fn, data, **kw).to_dense()


def reference_all(consumer, model, loss_fn, data):
    """``consume_all``'s value from the independent dense references (one concatenated batch)."""
    if consumer in DENSE:
        return DENSE[consumer](model, loss_fn, data)
    _, theta = flat_params(model)
    f = risk_fn(model, loss_fn, data)
    if consumer == "risk":
        grad = torch.func.grad(f)(theta)
        return torch.cat([f(theta).detach().reshape(1), grad])
    d = torch.randn(theta.numel(), dtype=theta.dtype, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return torch.stack([f(theta + a * d) for a in torch.linspace(-1, 1, 5, dtype=DT)])


# -- order dependence is detected, naming the cause --------------------------------------------
class Augmented(Dataset):
    """A data set with a random augmentation (fresh noise on every access)."""

    def __init__(self, X, y):
        self.X, self.y = X, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.X[i] + 0.1 * torch.randn(self.X.shape[1], dtype=self.X.dtype), self.y[i]


def order_dependent(cause):
    X, y = ce_tensors()
    model = mlp(0)
    if cause == "shuffle":
        gen = torch.Generator().manual_seed(0)
        return model, DataLoader(TensorDataset(X, y), batch_size=8, shuffle=True, generator=gen)
    if cause == "augmentation":
        return model, DataLoader(Augmented(X, y), batch_size=8)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.Dropout(0.5), nn.Tanh(), nn.Linear(5, 3)).to(DT)
    return model.train(), [(X[:12], y[:12]), (X[12:], y[12:])]


@pytest.mark.parametrize("consumer", CONSUMERS, ids=consumer_id)
@pytest.mark.parametrize(
    "cause,match",
    [
        ("shuffle", "shuffling DataLoader"),
        ("augmentation", "augmentation"),
        ("dropout", r"dropout layers \['1'\] in train mode"),
    ],
)
def test_order_dependence_raises_at_construction(consumer, cause, match):
    model, data = order_dependent(cause)
    with pytest.raises(ValueError, match=match):
        consume(consumer, model, nn.CrossEntropyLoss(), data)
    # skipping the check is the user's explicit choice
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "data changed between passes" where a cache notices
        out = consume(consumer, model, nn.CrossEntropyLoss(), data, check_deterministic=False)
    assert torch.isfinite(out).all()
    # the check never flips the mode behind the user's back
    assert all(m.training for m in model.modules())


def dropout_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.5), nn.Tanh(), nn.Linear(16, 3)).to(DT)


@pytest.mark.parametrize("consumer", CONSUMERS, ids=consumer_id)
def test_determinism_check_quiet_in_eval_mode(consumer):
    model = dropout_model().eval()
    _, data = make_problem("ce", "mlp", 3, 8, 0)
    out = consume(consumer, model, nn.CrossEntropyLoss(), data)
    assert not model.training
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("consumer", CONSUMERS, ids=consumer_id)
def test_determinism_check_fires_on_shuffled_batchnorm(consumer):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Linear(6, 3)).to(DT)
    _, data = make_problem("ce", "mlp", 3, 32, 0)
    X, y = data[0]
    loader = DataLoader(TensorDataset(X, y), batch_size=8, shuffle=True)
    with pytest.warns(UserWarning, match="BatchNorm"):
        with pytest.raises(ValueError, match="shuffl"):
            consume(consumer, model, nn.CrossEntropyLoss(), loader)
    model.eval()  # the order matters to the graph cache even without batch statistics
    with pytest.raises(ValueError, match="shuffl"):
        consume(consumer, model, nn.CrossEntropyLoss(), loader)


@pytest.mark.parametrize("consumer", CONSUMERS, ids=consumer_id)
def test_fixed_data_passes_the_check(consumer):
    X, y = ce_tensors()
    loader = DataLoader(TensorDataset(X, y), batch_size=8, shuffle=False)
    out = consume(consumer, mlp(0), nn.CrossEntropyLoss(), loader)
    assert torch.isfinite(out).all()


def _graph_bytes_per_batch(model, loss_fn, data):
    H = cl.HessianOperator(model, loss_fn, data, check_deterministic=False)
    H @ torch.ones(H.shape[0], dtype=DT)
    assert len(H._graphs) == len(data)
    return H._graph_bytes / len(data)


@settings(deadline=None, max_examples=12)
@given(
    seed=st.integers(0, 2**16),
    width=st.integers(1, 6),
    sizes=st.lists(st.integers(1, 7), min_size=2, max_size=5),
    budget=st.sampled_from(["none", "partial", "all"]),
    kind=st.sampled_from(["hessian", "ggn", "fisher"]),
)
def test_products_match_dense_for_any_split_and_cache(seed, width, sizes, budget, kind):
    model = mlp(seed, width)
    X, y = ce_tensors(sum(sizes), seed)
    data, start = [], 0
    for b in sizes:
        data.append((X[start : start + b], y[start : start + b]))
        start += b
    loss_fn = nn.CrossEntropyLoss()
    if kind == "hessian":
        per = _graph_bytes_per_batch(model, loss_fn, data)
        mb = {"none": 0.0, "partial": 1.5 * per / 2**20, "all": 1e6}[budget]
        op = cl.HessianOperator(model, loss_fn, data, graph_cache_mb=mb)
        ref = dense_hessian(model, loss_fn, data)
    elif kind == "ggn":
        op, ref = cl.GGNOperator(model, loss_fn, data), dense_ggn(model, loss_fn, data)
    else:
        op = cl.EmpiricalFisherOperator(model, loss_fn, data)
        ref = dense_empirical_fisher(model, loss_fn, data)
    V = torch.randn(op.shape[0], 3, dtype=DT, generator=torch.Generator().manual_seed(seed))
    for _ in range(3):  # repeated products (the cache's reuse) stay exact
        torch.testing.assert_close(op @ V, ref @ V, rtol=1e-10, atol=1e-10)
    if kind == "hessian" and budget == "partial":
        assert 0 < len(op._graphs) < len(data)  # the case under test really is a partial cache


@settings(deadline=None, max_examples=8)
@given(seed=st.integers(0, 2**16), batch=st.integers(2, 9), frac=st.sampled_from([0.3, 0.6]))
def test_shuffled_loader_with_check_off_never_mixes_passes(seed, batch, frac):
    """With the check off, a partial graph cache must not combine kept batches of one pass with
    recomputed batches of a reshuffled pass: every product is the full-data Hessian."""
    model = mlp(seed, 6)
    X, y = ce_tensors(30, seed)
    loss_fn = nn.CrossEntropyLoss()
    fixed = [(X[i : i + batch], y[i : i + batch]) for i in range(0, 30, batch)]
    per = _graph_bytes_per_batch(model, loss_fn, fixed)
    gen = torch.Generator().manual_seed(seed)
    loader = DataLoader(TensorDataset(X, y), batch_size=batch, shuffle=True, generator=gen)
    budget = frac * len(fixed) * per / 2**20
    H = cl.HessianOperator(model, loss_fn, loader, check_deterministic=False, graph_cache_mb=budget)
    ref = dense_hessian(model, loss_fn, fixed)
    v = torch.randn(H.shape[0], dtype=DT, generator=gen)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(4):
            torch.testing.assert_close(H @ v, ref @ v, rtol=1e-10, atol=1e-10)
    assert any("data changed between passes" in str(w.message) for w in caught)


# -- dtypes and devices ---------------------------------------------------------------------------
class Recorder(nn.Module):
    """Records the dtypes of the inputs it sees; token ids go through an embedding."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(7, 3)
        self.lin = nn.Linear(3, 3)
        self.seen: list = []

    def forward(self, ids, x):
        self.seen.append((ids.dtype, x.dtype))
        return self.lin(self.emb(ids).mean(1) + x)


@pytest.mark.parametrize("consumer", CONSUMERS, ids=consumer_id)
def test_float64_model_takes_float32_batches_and_keeps_integer_inputs(consumer):
    torch.manual_seed(0)
    model = Recorder().double()
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 7, (8, 5), generator=gen)
    x32 = torch.randn(8, 3, generator=gen)  # float32 inputs for a float64 model
    y = torch.randint(0, 3, (8,), generator=gen)
    value = consume(consumer, model, nn.CrossEntropyLoss(), [((ids, x32), y)])
    assert value.dtype == DT
    assert model.seen and all(s == (torch.int64, DT) for s in model.seen)
    model.seen.clear()
    ref = consume(consumer, model, nn.CrossEntropyLoss(), [((ids, x32.double()), y)])
    torch.testing.assert_close(value, ref, rtol=0, atol=0)


def test_float32_targets_for_a_float64_regression_model():
    model = mlp(0, d_out=2)
    gen = torch.Generator().manual_seed(0)
    X, y = torch.randn(6, 4, generator=gen), torch.randn(6, 2, generator=gen)
    H = cl.HessianOperator(model, nn.MSELoss(), [(X, y)])
    ref = dense_hessian(model, nn.MSELoss(), [(X.double(), y.double())])
    torch.testing.assert_close(H.to_dense(), ref, rtol=1e-10, atol=1e-12)


def test_tracker_casts_inputs_and_takes_tuples_and_dicts():
    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(1, 1)

        def forward(self, a, b=None):
            return self.lin(a) + (0.0 if b is None else b)

    torch.manual_seed(0)
    model = TwoInputs().double()
    x = torch.arange(16, dtype=torch.float32).unsqueeze(1) / 16
    target = torch.sin(2 * torch.pi * x[:, 0]).double()
    ref = SpectralBiasTracker(x.double(), target, [1], every=1).record(model)
    for inputs in [x, (x,), {"a": x}, (x, torch.zeros_like(x))]:
        vals = SpectralBiasTracker(inputs, target, [1], every=1).record(model)
        torch.testing.assert_close(vals, ref, rtol=1e-12, atol=1e-14)


# -- model outputs --------------------------------------------------------------------------------
class FakeModelOutput(OrderedDict):
    """Like transformers' ModelOutput: a mapping with attribute access."""

    def __getattr__(self, k):
        try:
            return self[k]
        except KeyError as err:
            raise AttributeError(k) from err


class Wrapped(nn.Module):
    def __init__(self, inner, how):
        super().__init__()
        self.inner, self.how = inner, how

    def forward(self, x):
        out = self.inner(x)
        if self.how == "modeloutput":
            return FakeModelOutput(loss=None, logits=out, hidden=x)
        if self.how == "dict":
            return {"scores": out, "aux": x}
        return (out, x)


OUTPUTS = [
    ("modeloutput", None),  # the logits field, by default
    ("modeloutput", "logits"),
    ("dict", "scores"),
    ("tuple", None),  # the first element, by default
    ("tuple", 0),
    ("dict", lambda out, batch: out["scores"]),
]


@pytest.mark.parametrize("consumer", CONSUMERS, ids=consumer_id)
@pytest.mark.parametrize("how,output", OUTPUTS)
def test_output_adapter(consumer, how, output):
    X, y = ce_tensors(10)
    data = [(X[:6], y[:6]), (X[6:], y[6:])]
    ref = consume(consumer, mlp(0), nn.CrossEntropyLoss(), data)
    got = consume(consumer, Wrapped(mlp(0), how), nn.CrossEntropyLoss(), data, output=output)
    torch.testing.assert_close(got, ref, rtol=0, atol=0)


def test_output_adapter_in_fwd_rev_mode_and_tracker():
    X, y = ce_tensors(10)
    for cls in OPERATORS:
        a = cls(mlp(0), nn.CrossEntropyLoss(), [(X, y)], mode="fwd-rev")
        b = cls(Wrapped(mlp(0), "modeloutput"), nn.CrossEntropyLoss(), [(X, y)], mode="fwd-rev")
        torch.testing.assert_close(b.to_dense(), a.to_dense(), rtol=1e-12, atol=1e-14)
    x = torch.linspace(0, 1, 17, dtype=DT)[:-1].unsqueeze(1)
    target = torch.cos(2 * torch.pi * x[:, 0]) + 0.5 * torch.sin(4 * torch.pi * x[:, 0])
    inner = nn.Sequential(nn.Linear(1, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    ref = SpectralBiasTracker(x, target, [1, 2], every=1).record(inner)
    got = SpectralBiasTracker(x, target, [1, 2], every=1, output="scores").record(
        Wrapped(inner, "dict")
    )
    torch.testing.assert_close(got, ref, rtol=0, atol=0)


def test_output_errors_say_what_to_pass():
    X, y = ce_tensors(6)
    with pytest.raises(TypeError, match="output="):
        cl.HessianOperator(Wrapped(mlp(0), "dict"), nn.CrossEntropyLoss(), [(X, y)])
    with pytest.raises(TypeError, match="no 'nope'"):
        cl.EmpiricalRisk(Wrapped(mlp(0), "dict"), nn.CrossEntropyLoss(), [(X, y)], output="nope")
    with pytest.raises(TypeError, match="output must be"):
        cl.EmpiricalRisk(mlp(0), nn.CrossEntropyLoss(), [(X, y)], output=1.5)


# -- one function in one analysis (train/eval rule) ----------------------------------------------
def bn_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Linear(6, 3)).to(DT)


@pytest.mark.parametrize("train", [True, False])
def test_landscape_and_operators_evaluate_the_same_function(train):
    X, y = ce_tensors(24)
    data = [(X[:8], y[:8]), (X[8:], y[8:])]
    model = bn_model()
    with torch.no_grad():  # running statistics different from any batch's statistics
        model[1].running_mean.fill_(0.7)
        model[1].running_var.fill_(3.0)
    model.train(train)
    loss_fn = nn.CrossEntropyLoss()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        H = cl.HessianOperator(model, loss_fn, data)
        risk = cl.EmpiricalRisk(model, loss_fn, data)
        (d,) = ls.eigen_directions(H, num=1, seed=0)
        res = ls.line(model, loss_fn, data, d, span=(-1, 1), steps=3, progress=False)
    centre = res.loss[1]
    op_loss, _ = H.loss_and_gradient()
    torch.testing.assert_close(centre, risk.evaluate().loss, rtol=1e-13, atol=0)
    torch.testing.assert_close(centre, op_loss.to(centre.dtype), rtol=1e-13, atol=0)
    # the independent reference: the model in its own mode on the concatenated batches
    with torch.no_grad():
        state = {k: v.clone() for k, v in model.state_dict().items()}
        parts = [len(yb) / len(y) * loss_fn(model(Xb), yb) for Xb, yb in data]
        model.load_state_dict(state)
    torch.testing.assert_close(centre, sum(parts).to(centre.dtype), rtol=1e-13, atol=0)


def test_analysis_leaves_a_train_mode_model_as_it_found_it():
    X, y = ce_tensors(24)
    data = [(X[:8], y[:8]), (X[8:], y[8:])]
    model = bn_model().train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.warns(UserWarning, match="BatchNorm"):
        H = cl.HessianOperator(model, nn.CrossEntropyLoss(), data)
    cl.eigsh(H, k=2, seed=0)
    with pytest.warns(UserWarning, match="BatchNorm"):
        cl.GGNOperator(model, nn.CrossEntropyLoss(), data, mode="fwd-rev").to_dense()
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert all(m.training for m in model.modules())


# -- the rest of the contract ---------------------------------------------------------------------
@pytest.mark.parametrize("consumer", CONSUMERS, ids=consumer_id)
def test_errors_shared_by_every_consumer(consumer):
    X, y = ce_tensors(6)
    with pytest.raises(TypeError, match="one-shot iterator"):
        consume(consumer, mlp(0), nn.CrossEntropyLoss(), iter([(X, y)]))
    with pytest.raises(TypeError, match="one-shot iterator"):
        consume(consumer, mlp(0), nn.CrossEntropyLoss(), (b for b in [(X, y)]))
    with pytest.raises(ValueError, match="empty"):
        consume(consumer, mlp(0), nn.CrossEntropyLoss(), [])
    empty = (torch.zeros(0, 4, dtype=DT), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="empty"):
        consume(consumer, mlp(0), nn.CrossEntropyLoss(), [empty])
    with pytest.raises(TypeError, match=r"pair \(X, y\)"):
        consume(consumer, mlp(0), nn.CrossEntropyLoss(), [X])
    with pytest.raises(TypeError, match="length 3"):
        consume(consumer, mlp(0), nn.CrossEntropyLoss(), [(X, y, y)])
    with pytest.raises(ValueError, match="reduction='none'"):
        consume(consumer, mlp(0), nn.CrossEntropyLoss(reduction="none"), [(X, y)])


@pytest.fixture
def problem():
    return make_problem("ce", "mlp", 3, 8, 0, [4, 4])


@pytest.mark.parametrize("consumer", ANY_LOSS_CONSUMERS, ids=consumer_id)
def test_non_scalar_loss(consumer, problem):
    model, data = problem

    def per_sample(out, y):
        return nn.functional.cross_entropy(out, y, reduction="none")

    with pytest.raises(ValueError, match="not a scalar"):
        consume(consumer, model, per_sample, data)


@pytest.mark.parametrize("consumer", CONSUMERS, ids=consumer_id)
def test_no_trainable_parameters(consumer, problem):
    model, data = problem
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        consume(consumer, model, nn.CrossEntropyLoss(), data)


@pytest.mark.parametrize("consumer", CONSUMERS, ids=consumer_id)
def test_unknown_parameter_names(consumer, problem):
    model, data = problem
    with pytest.raises(ValueError, match="no parameter of the model matches 'fc.weight'"):
        consume(consumer, model, nn.CrossEntropyLoss(), data, params=["fc.weight"])


@pytest.mark.parametrize("consumer", CONSUMERS, ids=consumer_id)
def test_mixed_parameter_dtypes(consumer, problem):
    model, data = problem
    model[2].float()
    with pytest.raises(ValueError, match="share dtype"):
        consume(consumer, model, nn.CrossEntropyLoss(), data)


@pytest.mark.parametrize("consumer", CONSUMERS, ids=consumer_id)
def test_changing_data_size_detected(consumer, problem):
    model, data = problem

    class Shrinking:
        def __init__(self):
            self.calls = 0

        def __iter__(self):
            self.calls += 1
            return iter(data if self.calls == 1 else data[:1])

    with pytest.raises(ValueError, match="8 samples at construction but 4 now"):
        consume(consumer, model, nn.CrossEntropyLoss(), Shrinking(), check_deterministic=False)


@pytest.mark.parametrize("consumer", CONSUMERS, ids=consumer_id)
def test_nan_batch_named(consumer, problem):
    model, data = problem
    X, y = data[1]
    bad = X.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="batch 1"):
        consume(consumer, model, nn.CrossEntropyLoss(), [data[0], (bad, y)])
    if consumer in OPERATORS:  # with the check off, the product names the batch
        op = consumer(model, nn.CrossEntropyLoss(), [data[0], (bad, y)], check_deterministic=False)
        with pytest.raises(ValueError, match="not finite on batch 1"):
            op @ torch.ones(op.shape[0], dtype=DT)


# -- batches: weights, splits, reductions, inputs, loaders --------------------------------------
@pytest.mark.parametrize("consumer", CONSUMERS, ids=consumer_id)
@given(
    kind=st.sampled_from(LOSSES),
    seed=st.integers(0, 10_000),
    cuts_a=st.lists(st.integers(0, 100), min_size=0, max_size=4),
    cuts_b=st.lists(st.integers(0, 100), min_size=1, max_size=5),
)
def test_batch_split_invariance(consumer, kind, seed, cuts_a, cuts_b):
    n = 11
    model, data_a = make_problem(
        kind, "mlp", 3, n, seed, split_points(n, cuts_a) if cuts_a else None
    )
    _, data_b = make_problem(kind, "mlp", 3, n, seed, split_points(n, cuts_b))
    loss = make_loss(kind)
    A = consume_all(consumer, model, loss, data_a)
    B = consume_all(consumer, model, loss, data_b)
    torch.testing.assert_close(A, B, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("consumer", CONSUMERS, ids=consumer_id)
def test_batches_weighted_by_size(consumer):
    # uneven batches: the whole data set's risk, not a mean of batch means
    model, data = make_problem("mse", "mlp", 3, 12, 3, [1, 9, 2])
    whole = [(torch.cat([b[0] for b in data]), torch.cat([b[1] for b in data]))]
    a = consume_all(consumer, model, nn.MSELoss(), data)
    b = consume_all(consumer, model, nn.MSELoss(), whole)
    torch.testing.assert_close(a, b)
    unweighted = sum(consume_all(consumer, model, nn.MSELoss(), [batch]) for batch in data) / 3
    assert not torch.allclose(a, unweighted)


@pytest.mark.parametrize("consumer", CONSUMERS, ids=consumer_id)
def test_sum_reduction_sums_over_batches(consumer):
    model, data = make_problem("mse", "mlp", 3, 8, 4, [3, 5])
    loss_fn = nn.MSELoss(reduction="sum")
    got = consume_all(consumer, model, loss_fn, data)
    per_batch = sum(consume_all(consumer, model, loss_fn, [batch]) for batch in data)
    torch.testing.assert_close(got, per_batch)
    torch.testing.assert_close(got, reference_all(consumer, model, loss_fn, data))
    if consumer in ("risk", "line"):  # the loss itself, from the batches directly
        with torch.no_grad():
            expected = sum(loss_fn(model(X), y) for X, y in data)
        value = consume(consumer, model, loss_fn, data)
        torch.testing.assert_close(value, expected.to(value.dtype))


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 2)
        self.b = nn.Linear(2, 2)

    def forward(self, x, z):
        return torch.tanh(self.a(x)) * self.b(z)


@pytest.mark.parametrize("consumer", CONSUMERS, ids=consumer_id)
def test_inputs_as_tuple_and_dict(consumer):
    torch.manual_seed(0)
    model = TwoInputs().to(DT)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(6, 3, generator=gen, dtype=DT)
    z = torch.randn(6, 2, generator=gen, dtype=DT)
    y = torch.randint(0, 2, (6,), generator=gen)
    loss = nn.CrossEntropyLoss()
    for kw in [{"mode": m} for m in MODES] if consumer in OPERATORS else [{}]:
        a = consume_all(consumer, model, loss, [((x, z), y)], **kw)
        b = consume_all(consumer, model, loss, [({"x": x, "z": z}, y)], **kw)
        torch.testing.assert_close(a, b)
        assert torch.isfinite(b).all()


@pytest.mark.parametrize("consumer", ANY_LOSS_CONSUMERS, ids=consumer_id)
def test_dataloader_and_custom_callable_loss(consumer):
    model, data = make_problem("mse", "mlp", 3, 10, 4)
    X, y = data[0]
    loader = DataLoader(TensorDataset(X, y), batch_size=3)  # batches 3, 3, 3, 1

    def my_loss(out, target):  # a callable without a .reduction attribute: a mean
        return ((out - target) ** 4).mean()

    if consumer != "line":
        built = (cl.EmpiricalRisk if consumer == "risk" else consumer)(model, my_loss, loader)
        assert built.num_data == 10
    got = consume_all(consumer, model, my_loss, loader)
    torch.testing.assert_close(got, reference_all(consumer, model, my_loss, data))


def test_batch_weights_and_evaluate_metrics():
    X, y = ce_tensors(10)
    model = mlp(0)
    data = [(X[:3], y[:3]), (X[3:], y[3:])]
    risk = cl.EmpiricalRisk(model, nn.CrossEntropyLoss(), data)
    assert [b.weight for b in risk.batches()] == [0.3, 0.7]
    acc = {"acc": lambda out, t: (out.argmax(1) == t).double().mean()}
    ev = risk.evaluate(acc)
    with torch.no_grad():
        out = model(X)
    torch.testing.assert_close(ev.loss, nn.functional.cross_entropy(out, y), rtol=1e-13, atol=0)
    torch.testing.assert_close(ev.metrics["acc"], (out.argmax(1) == y).double().mean())
    assert ev.num_data == 10 and "loss=" in repr(ev)
    loss, grad = risk.loss_and_gradient()
    torch.testing.assert_close(loss.double(), ev.loss, rtol=1e-13, atol=0)
    assert grad.shape == (sum(p.numel() for p in model.parameters()),)


# -- gradient checkpointing ---------------------------------------------------------------------
class Checkpointed(nn.Module):
    def __init__(self, reentrant, input_grad=False):
        super().__init__()
        self.a, self.b = nn.Linear(4, 5), nn.Linear(5, 3)
        self.reentrant, self.input_grad = reentrant, input_grad

    def forward(self, x):
        from torch.utils.checkpoint import checkpoint

        if self.input_grad:  # what Hugging Face's enable_input_require_grads() does
            x = x.detach().requires_grad_(True)
        h = checkpoint(lambda t: torch.tanh(self.a(t)), x, use_reentrant=self.reentrant)
        return self.b(h)


@pytest.mark.parametrize("consumer", ["risk", *OPERATORS], ids=consumer_id)
def test_non_reentrant_checkpointing_is_exact(consumer):
    X, y = ce_tensors(8)
    torch.manual_seed(0)
    model = Checkpointed(reentrant=False).to(DT)
    torch.manual_seed(0)
    plain = Checkpointed(reentrant=False).to(DT)
    plain.forward = lambda x: plain.b(torch.tanh(plain.a(x)))
    if consumer == "risk":
        got = cl.EmpiricalRisk(model, nn.CrossEntropyLoss(), [(X, y)]).loss_and_gradient()[1]
        ref = cl.EmpiricalRisk(plain, nn.CrossEntropyLoss(), [(X, y)]).loss_and_gradient()[1]
    else:
        got = consumer(model, nn.CrossEntropyLoss(), [(X, y)]).to_dense()
        ref = consumer(plain, nn.CrossEntropyLoss(), [(X, y)]).to_dense()
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("input_grad", [False, True])
@pytest.mark.parametrize("consumer", ["risk", cl.HessianOperator], ids=consumer_id)
def test_reentrant_checkpointing_raises_with_the_fix(consumer, input_grad):
    X, y = ce_tensors(8)
    model = Checkpointed(reentrant=True, input_grad=input_grad).to(DT)
    with pytest.raises(ValueError, match="use_reentrant=False"):
        if consumer == "risk":
            cl.EmpiricalRisk(model, nn.CrossEntropyLoss(), [(X, y)]).loss_and_gradient()
        else:
            H = consumer(model, nn.CrossEntropyLoss(), [(X, y)])
            H @ torch.ones(H.shape[0], dtype=DT)
