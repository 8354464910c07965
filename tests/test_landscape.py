"""Tests for curvlab.landscape: directions, line, surface, interpolate."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import curvlab.landscape as ls
from curvlab import DenseOperator
from curvlab._params import select_params

SETTINGS = settings(max_examples=20, deadline=None)


# -- helpers -------------------------------------------------------------------------------
def regression_problem(seed, n_in=3, n_out=2, sizes=(7, 5, 4), dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    model = nn.Linear(n_in, n_out).to(dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=dtype))
    data = [
        (
            torch.randn(b, n_in, generator=g, dtype=dtype),
            torch.randn(b, n_out, generator=g, dtype=dtype),
        )
        for b in sizes
    ]
    return model, data


def full_loss(model, loss_fn, data, theta=None):
    """Reference: the loss of the concatenated data, with parameters theta (flat) if given."""
    X = torch.cat([b[0] for b in data])
    y = torch.cat([b[1] for b in data])
    names, tensors = select_params(model)
    if theta is None:
        return loss_fn(model(X), y)
    shapes = [p.shape for p in tensors]
    parts = torch.split(theta, [p.numel() for p in tensors])
    params = {n: t.reshape(s) for n, t, s in zip(names, parts, shapes)}
    return loss_fn(torch.func.functional_call(model, params, (X,)), y)


def flat_params(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def hessian_at(model, loss_fn, data, theta):
    return torch.autograd.functional.hessian(lambda t: full_loss(model, loss_fn, data, t), theta)


def move_to_minimum(model, data):
    """Set a linear model to its least-squares solution (gradient zero)."""
    X = torch.cat([b[0] for b in data])
    y = torch.cat([b[1] for b in data])
    A = torch.cat([X, torch.ones(X.shape[0], 1, dtype=X.dtype)], dim=1)
    sol = torch.linalg.lstsq(A, y).solution  # (n_in + 1, n_out)
    with torch.no_grad():
        model.weight.copy_(sol[:-1].T)
        model.bias.copy_(sol[-1])


class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 4 * 4, 3)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        h = torch.relu(self.bn(self.conv(x)))
        return self.fc(self.drop(h.flatten(1)))


def conv_data(seed=0, n=12):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(n, 1, 4, 4, generator=g), torch.randint(0, 3, (n,), generator=g))]


def snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_identical(model, snap):
    for k, v in model.state_dict().items():
        assert torch.equal(v, snap[k]), k
        assert v.dtype == snap[k].dtype


# -- line: the parabola along an eigenvector ------------------------------------------------
@SETTINGS
@given(seed=st.integers(0, 10_000), k=st.integers(0, 7))
def test_line_along_eigenvector_is_parabola_with_eigenvalue_curvature(seed, k):
    model, data = regression_problem(seed)
    loss_fn = nn.MSELoss()
    move_to_minimum(model, data)
    theta = flat_params(model)
    H = hessian_at(model, loss_fn, data, theta)
    evals, evecs = torch.linalg.eigh(H)
    v, lam = evecs[:, k], evals[k]
    L0 = full_loss(model, loss_fn, data).detach()
    res = ls.line(model, loss_fn, data, v, span=(-2.0, 1.5), steps=9, progress=False)
    a = res.coords
    torch.testing.assert_close(a, torch.linspace(-2.0, 1.5, 9, dtype=torch.float64))
    expected = L0 + 0.5 * lam * a**2
    torch.testing.assert_close(res.loss, expected, rtol=1e-9, atol=1e-10)
    assert res.num_data == 16


@SETTINGS
@given(seed=st.integers(0, 10_000))
def test_line_away_from_minimum_is_taylor_quadratic(seed):
    # a quadratic loss away from the minimum: L(a) = L0 + a g.v + a^2 v.H.v / 2, exactly
    model, data = regression_problem(seed)
    loss_fn = nn.MSELoss()
    theta = flat_params(model)
    g = torch.Generator().manual_seed(seed + 1)
    v = torch.randn(theta.shape, generator=g, dtype=torch.float64)
    grad = torch.autograd.functional.jacobian(lambda t: full_loss(model, loss_fn, data, t), theta)
    H = hessian_at(model, loss_fn, data, theta)
    L0 = full_loss(model, loss_fn, data).detach()
    res = ls.line(model, loss_fn, data, v, steps=7, progress=False)
    a = res.coords
    torch.testing.assert_close(res.loss, L0 + a * (grad @ v) + 0.5 * a**2 * (v @ H @ v))


def test_direction_as_list_of_tensors_equals_flat():
    model, data = regression_problem(5)
    (d,) = ls.random_directions(model, num=1, seed=3, normalization=None, ignore=None)
    parts = [t.reshape(p.shape) for t, p in zip(torch.split(d, [6, 2]), model.parameters())]
    a = ls.line(model, nn.MSELoss(), data, d, steps=5, progress=False)
    b = ls.line(model, nn.MSELoss(), data, parts, steps=5, progress=False)
    c = ls.line(model, nn.MSELoss(), data, [d], steps=5, progress=False)
    torch.testing.assert_close(a.loss, b.loss, rtol=0, atol=0)
    torch.testing.assert_close(a.loss, c.loss, rtol=0, atol=0)
    assert a.direction_norm == pytest.approx(float(d.norm()))


def test_params_selection_moves_only_selected():
    model = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1)).double()
    g = torch.Generator().manual_seed(0)
    data = [
        (
            torch.randn(6, 2, generator=g, dtype=torch.float64),
            torch.randn(6, 1, generator=g, dtype=torch.float64),
        )
    ]
    (d,) = ls.random_directions(model, num=1, seed=0, params="2.*", ignore=None)
    assert d.shape == (4,)
    res = ls.line(
        model, nn.MSELoss(), data, d, params="2.*", span=(1.0, 1.0), steps=1, progress=False
    )
    ref = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1)).double()
    ref.load_state_dict(model.state_dict())
    with torch.no_grad():
        ref[2].weight += d[:3].reshape(1, 3)
        ref[2].bias += d[3:]
    torch.testing.assert_close(res.loss[0], nn.MSELoss()(ref(data[0][0]), data[0][1]).detach())


def test_metrics_are_weighted_like_the_loss():
    model = ConvNet().eval()
    data = conv_data(0, 10) + conv_data(1, 3)

    def accuracy(out, y):
        return (out.argmax(1) == y).double().mean()

    (d,) = ls.random_directions(model, num=1, seed=0)
    res = ls.line(
        model,
        nn.CrossEntropyLoss(),
        data,
        d,
        span=(0.0, 0.0),
        steps=1,
        metrics={"accuracy": accuracy},
        progress=False,
    )
    X = torch.cat([b[0] for b in data])
    y = torch.cat([b[1] for b in data])
    with torch.no_grad():
        out = model(X)
    assert res.metrics["accuracy"][0].item() == pytest.approx(
        (out.argmax(1) == y).double().mean().item()
    )
    assert res.loss[0].item() == pytest.approx(nn.CrossEntropyLoss()(out, y).item(), rel=1e-6)


# -- surface ------------------------------------------------------------------------------
def test_surface_along_two_eigenvectors_is_the_quadratic_form():
    model, data = regression_problem(11)
    loss_fn = nn.MSELoss()
    move_to_minimum(model, data)
    theta = flat_params(model)
    H = hessian_at(model, loss_fn, data, theta)
    evals, evecs = torch.linalg.eigh(H)
    v1, v2 = evecs[:, -1], evecs[:, 2]
    L0 = full_loss(model, loss_fn, data).detach()
    res = ls.surface(
        model,
        loss_fn,
        data,
        [v1, v2],
        span=((-1.0, 2.0), (-0.5, 0.5)),
        steps=(5, 3),
        progress=False,
    )
    a, b = res.coords
    assert res.loss.shape == (5, 3)
    A, B = res.meshgrid()
    expected = L0 + 0.5 * (evals[-1] * A**2 + evals[2] * B**2)
    torch.testing.assert_close(res.loss, expected, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(A[:, 0], a)
    # the (n, 2) column layout of EigenResult.eigenvectors gives the same surface
    res2 = ls.surface(
        model,
        loss_fn,
        data,
        torch.stack([v1, v2], dim=1),
        span=((-1.0, 2.0), (-0.5, 0.5)),
        steps=(5, 3),
        progress=False,
    )
    torch.testing.assert_close(res.loss, res2.loss, rtol=0, atol=0)
    res3 = ls.surface(
        model,
        loss_fn,
        data,
        torch.stack([v1, v2]),
        span=((-1.0, 2.0), (-0.5, 0.5)),
        steps=(5, 3),
        progress=False,
    )
    torch.testing.assert_close(res.loss, res3.loss, rtol=0, atol=0)


# -- model state is restored ----------------------------------------------------------------
def test_state_restored_and_mode_kept():
    """The model is evaluated in the mode it is in (the operators' rule), BatchNorm running
    statistics updated by train-mode passes are restored, and the flags are untouched."""
    model = ConvNet()
    model.train()
    model.fc.eval()  # a mixed state must come back as it was
    model.drop.eval()  # dropout in train mode would fail the determinism check
    flags = {n: m.training for n, m in model.named_modules()}
    snap = snapshot(model)
    seen = []
    data = conv_data()

    def loss_fn(out, y):
        seen.append((model.training, model.bn.training, model.drop.training))
        return nn.functional.cross_entropy(out, y)

    dirs = ls.random_directions(model, seed=0)
    with pytest.warns(UserWarning, match="BatchNorm"):
        ls.line(model, loss_fn, data, dirs[0], steps=3, progress=False)
    with pytest.warns(UserWarning, match="BatchNorm"):
        ls.surface(model, loss_fn, data, dirs, steps=2, progress=False)
    assert seen and all(s == (True, True, False) for s in seen)
    assert_identical(model, snap)  # running stats restored after the train-mode passes
    assert {n: m.training for n, m in model.named_modules()} == flags
    for p in model.parameters():
        assert p.grad is None


@pytest.mark.parametrize("which", ["line", "surface", "interpolate"])
def test_state_restored_after_exception_in_loss(which):
    model = ConvNet().train()
    model.drop.eval()
    snap = snapshot(model)
    calls = []

    def loss_fn(out, y):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("boom")
        return nn.functional.cross_entropy(out, y)

    data = conv_data()
    dirs = ls.random_directions(model, seed=0)
    with pytest.raises(RuntimeError, match="boom"):
        if which == "line":
            ls.line(model, loss_fn, data, 10.0 * dirs[0], steps=5, progress=False)
        elif which == "surface":
            ls.surface(model, loss_fn, data, dirs, span=(-3, 3), steps=3, progress=False)
        else:
            other = ConvNet()
            ls.interpolate(model, other, loss_fn, data, steps=5, progress=False)
    assert_identical(model, snap)
    assert [m.training for m in model.modules()] == [m is not model.drop for m in model.modules()]


def test_progress_bar_runs(capsys):
    model, data = regression_problem(0)
    (d,) = ls.random_directions(model, num=1, seed=0)
    res = ls.line(model, nn.MSELoss(), data, d, steps=3, progress=True)
    assert res.loss.shape == (3,)


# -- directions ---------------------------------------------------------------------------
@SETTINGS
@given(
    seed=st.integers(0, 2**31),
    num=st.integers(1, 3),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_filter_normalized_norms_match_weights(seed, num, dtype):
    model = ConvNet().to(dtype)
    dirs = ls.random_directions(model, num=num, seed=seed)
    assert len(dirs) == num
    names, tensors = select_params(model)
    for d in dirs:
        assert d.dtype == dtype and d.shape == (sum(p.numel() for p in tensors),)
        parts = torch.split(d, [p.numel() for p in tensors])
        for name, w, dp in zip(names, tensors, parts):
            dp = dp.reshape(w.shape)
            if w.dim() <= 1:
                assert torch.count_nonzero(dp) == 0, name
            else:
                wn = w.detach().reshape(w.shape[0], -1).norm(dim=1)
                dn = dp.reshape(w.shape[0], -1).norm(dim=1)
                torch.testing.assert_close(dn, wn, rtol=1e-5, atol=1e-6)


def test_layer_normalization_and_ignore_none():
    model = ConvNet().double()
    (d,) = ls.random_directions(model, num=1, normalization="layer", ignore=None, seed=7)
    names, tensors = select_params(model)
    for w, dp in zip(tensors, torch.split(d, [p.numel() for p in tensors])):
        if w.dim() <= 1:  # reference implementation: biases/BN copy the weights
            torch.testing.assert_close(dp, w.detach().reshape(-1), rtol=0, atol=0)
        else:
            assert dp.norm().item() == pytest.approx(w.detach().norm().item(), rel=1e-10)
            # a whole-layer scaling, not a per-filter one: filter norms differ from the weights'
            wn = w.detach().reshape(w.shape[0], -1).norm(dim=1)
            dn = dp.reshape(w.shape[0], -1).norm(dim=1)
            assert not torch.allclose(dn, wn, rtol=1e-3)


def test_unnormalized_directions_are_standard_gaussian():
    model = nn.Linear(200, 100)
    (d,) = ls.random_directions(model, num=1, normalization=None, ignore=None, seed=0)
    assert d.shape == (20100,)
    assert abs(d.mean().item()) < 0.03
    assert d.std().item() == pytest.approx(1.0, abs=0.03)


def test_same_seed_same_directions():
    model = ConvNet()
    a = ls.random_directions(model, seed=123)
    b = ls.random_directions(model, seed=123)
    c = ls.random_directions(model, seed=124)
    d = ls.random_directions(model, seed=torch.Generator().manual_seed(123))
    f = ls.random_directions(model, seed=np.int64(123))
    for x, y, z, w in zip(a, b, d, f):
        assert torch.equal(x, y) and torch.equal(x, z) and torch.equal(x, w)
    assert not torch.equal(a[0], c[0])
    assert not torch.equal(a[0], a[1])
    e = ls.random_directions(model, seed=None)
    assert not torch.equal(a[0], e[0])


def test_eigen_directions_match_dense_eigh():
    g = torch.Generator().manual_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(30, 30, generator=g, dtype=torch.float64))
    evals = torch.cat([torch.tensor([10.0, 7.0, 5.0]), torch.linspace(-3.0, 3.0, 27)]).double()
    A = Q @ torch.diag(evals) @ Q.T
    A = (A + A.T) / 2
    dirs, vals = ls.eigen_directions(DenseOperator(A), num=3, seed=0, return_eigenvalues=True)
    ref_vals, ref_vecs = torch.linalg.eigh(A)
    torch.testing.assert_close(vals, ref_vals.flip(0)[:3], rtol=1e-6, atol=1e-6)
    for i, d in enumerate(dirs):
        ref = ref_vecs[:, -1 - i]
        assert d.norm().item() == pytest.approx(1.0, abs=1e-10)
        assert abs((d @ ref).item()) == pytest.approx(1.0, abs=1e-6)
        assert d[d.abs().argmax()] > 0  # sign convention
    again = ls.eigen_directions(DenseOperator(A), num=3, seed=5)
    for d, e in zip(dirs, again):
        torch.testing.assert_close(d, e, rtol=0, atol=1e-6)


# -- interpolate --------------------------------------------------------------------------
def test_interpolate_matches_models_on_the_path():
    model_a, data = regression_problem(1)
    model_b, _ = regression_problem(2)
    loss_fn = nn.MSELoss()
    snap_b = snapshot(model_b)
    res = ls.interpolate(model_a, model_b, loss_fn, data, span=(-0.5, 1.5), steps=5, progress=False)
    torch.testing.assert_close(res.coords, torch.tensor([-0.5, 0.0, 0.5, 1.0, 1.5]).double())
    ta, tb = flat_params(model_a), flat_params(model_b)
    for a, val in zip(res.coords, res.loss):
        ref = full_loss(model_a, loss_fn, data, (1 - a) * ta + a * tb).detach()
        torch.testing.assert_close(val, ref)
    assert res.direction_norm == pytest.approx(float((tb - ta).norm()))
    assert_identical(model_b, snap_b)
    torch.testing.assert_close(flat_params(model_a), ta, rtol=0, atol=0)


def test_interpolate_buffers():
    a, b = ConvNet().eval(), ConvNet().eval()
    with torch.no_grad():
        b.bn.running_mean.fill_(1.0)
        b.bn.running_var.fill_(4.0)
    snap = snapshot(a)
    data = conv_data()
    with_buf = ls.interpolate(
        a, b, nn.CrossEntropyLoss(), data, span=(1.0, 1.0), steps=1, progress=False
    )
    without = ls.interpolate(
        a, b, nn.CrossEntropyLoss(), data, span=(1.0, 1.0), steps=1, buffers=False, progress=False
    )
    with torch.no_grad():
        ref = nn.CrossEntropyLoss()(b(data[0][0]), data[0][1])
    assert with_buf.loss[0].item() == pytest.approx(ref.item(), rel=1e-5)
    assert without.loss[0].item() != pytest.approx(ref.item(), rel=1e-5)
    assert_identical(a, snap)


# -- bad input ----------------------------------------------------------------------------
def test_bad_input_errors():
    model, data = regression_problem(0)
    loss_fn = nn.MSELoss()
    (d,) = ls.random_directions(model, num=1, seed=0)
    with pytest.raises(ValueError, match="shape"):
        ls.line(model, loss_fn, data, torch.zeros(3), progress=False)
    with pytest.raises(ValueError, match="list of 1 tensors|does not match"):
        ls.line(model, loss_fn, data, [torch.zeros(3)], progress=False)
    with pytest.raises(TypeError, match="flat tensor"):
        ls.line(model, loss_fn, data, "up", progress=False)
    with pytest.raises(ValueError, match="NaN"):
        ls.line(model, loss_fn, data, torch.full_like(d, float("nan")), progress=False)
    # the data contract's errors (iterator, empty, pair, reduction, non-scalar loss) are
    # tests/test_risk.py's, through every consumer
    with pytest.raises(ValueError, match="steps"):
        ls.line(model, loss_fn, data, d, steps=0, progress=False)
    with pytest.raises(ValueError, match="span"):
        ls.line(model, loss_fn, data, d, span=(1.0, -1.0), progress=False)
    with pytest.raises(ValueError, match="span"):
        ls.line(model, loss_fn, data, d, span=3.0, progress=False)
    with pytest.raises(TypeError, match="metrics"):
        ls.line(model, loss_fn, data, d, metrics={"acc": 3}, progress=False)
    with pytest.raises(ValueError, match="reserved"):
        ls.line(model, loss_fn, data, d, metrics={"loss": loss_fn}, progress=False)
    with pytest.raises(ValueError, match="two directions"):
        ls.surface(model, loss_fn, data, [d, d, d], progress=False)
    with pytest.raises(ValueError, match="shape"):
        ls.surface(model, loss_fn, data, torch.zeros(8, 3), progress=False)
    with pytest.raises(ValueError, match="num"):
        ls.random_directions(model, num=0)
    with pytest.raises(ValueError, match="normalization"):
        ls.random_directions(model, normalization="filterwise")
    with pytest.raises(ValueError, match="ignore"):
        ls.random_directions(model, ignore="bias")
    with pytest.raises(TypeError, match="seed"):
        ls.random_directions(model, seed=1.5)
    with pytest.raises(ValueError, match="different parameter"):
        ls.interpolate(model, nn.Linear(3, 3).double(), loss_fn, data, progress=False)
    with pytest.raises(ValueError, match="num"):
        ls.eigen_directions(DenseOperator(torch.eye(3)), num=4)


def test_line_curvature_is_the_rayleigh_quotient_for_a_smooth_loss():
    """Along a top eigenvector (smooth tanh MLP, small span) the second difference equals the
    eigenvalue from a dense float64 Hessian; a rescaled direction gives the same value per
    unit length; a wide span gives less (the loss is not quadratic)."""
    from curvlab.params import flatten

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2)).double()
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(40, 3, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 2, (40,), generator=gen)
    data = [(X, y)]
    params = [p for p in model.parameters()]
    theta = flatten([p.detach() for p in params])

    def f(flat):
        from torch.func import functional_call

        from curvlab.params import unflatten

        names = [n for n, _ in model.named_parameters()]
        return nn.functional.cross_entropy(
            functional_call(model, dict(zip(names, unflatten(flat, params))), (X,)), y
        )

    evals, evecs = torch.linalg.eigh(torch.func.hessian(f)(theta))
    lam, v = float(evals[-1]), evecs[:, -1]
    for scale in (1.0, 3.0):
        res = ls.line(
            model,
            nn.CrossEntropyLoss(),
            data,
            scale * v,
            span=(-1e-3, 1e-3),
            steps=5,
            progress=False,
        )
        assert abs(res.curvature() - lam) < 1e-5 * lam
    wide = ls.line(model, nn.CrossEntropyLoss(), data, v, span=(-5, 5), steps=3, progress=False)
    assert wide.curvature() < 0.9 * lam
    with pytest.raises(ValueError, match="3 steps"):
        ls.line(model, nn.CrossEntropyLoss(), data, v, steps=2, progress=False).curvature()


def test_result_reprs_are_compact():
    model, data = regression_problem(0)
    (d,) = ls.random_directions(model, num=1, seed=0)
    r = repr(ls.line(model, nn.MSELoss(), data, d, steps=101, progress=False))
    assert r.startswith("LandscapeLine(101 points on [-1, 1], min loss") and "tensor(" not in r
    s = repr(
        ls.surface(
            model, nn.MSELoss(), data, ls.random_directions(model, seed=0), steps=9, progress=False
        )
    )
    assert s.startswith("LandscapeSurface(9 x 9 grid, loss in [") and "tensor(" not in s


def test_interpolate_between_frozen_models():
    """Models loaded for evaluation (requires_grad_(False)) interpolate as before."""
    torch.manual_seed(0)
    a, b = nn.Linear(2, 1).double(), nn.Linear(2, 1).double()
    for m in (a, b):
        m.requires_grad_(False)
    X = torch.randn(8, 2, dtype=torch.float64)
    y = torch.randn(8, 1, dtype=torch.float64)
    res = ls.interpolate(a, b, nn.MSELoss(), [(X, y)], steps=3, span=(0, 1), progress=False)
    with torch.no_grad():
        ref = [nn.functional.mse_loss(m(X), y) for m in (a, b)]
    torch.testing.assert_close(res.loss[0], ref[0], rtol=1e-12, atol=0)
    torch.testing.assert_close(res.loss[2], ref[1], rtol=1e-12, atol=0)


def test_callback_stops_a_surface_and_an_interpolation():
    model, data = regression_problem(0)
    loss_fn = nn.MSELoss()
    snap = snapshot(model)
    dirs = ls.random_directions(model, seed=0)
    full = ls.surface(model, loss_fn, data, dirs, steps=(4, 3), progress=False)
    seen = []

    def cb(it):
        seen.append((it.iteration, it.products, it.info["index"], float(it.estimate)))
        return it.iteration >= 5

    part = ls.surface(model, loss_fn, data, dirs, steps=(4, 3), progress=False, callback=cb)
    assert part.stopped and not full.stopped
    flat, ref = part.loss.reshape(-1), full.loss.reshape(-1)
    torch.testing.assert_close(flat[:5], ref[:5])  # row-major: the first five points
    assert torch.isnan(flat[5:]).all()
    assert [s[:3] for s in seen] == [(i, i, i - 1) for i in range(1, 6)]
    assert [s[3] for s in seen] == pytest.approx(ref[:5].tolist(), rel=1e-12)
    assert_identical(model, snap)  # the model is restored after a stop too
    other, _ = regression_problem(1)
    never = ls.interpolate(
        model, other, loss_fn, data, steps=5, progress=False, callback=lambda it: False
    )
    last = ls.interpolate(
        model, other, loss_fn, data, steps=5, progress=False, callback=lambda it: it.iteration == 5
    )  # a stop on the last point
    assert not never.stopped and not last.stopped
    torch.testing.assert_close(never.loss, last.loss)
    with pytest.raises(TypeError, match="callback must be None or a callable"):
        ls.line(model, loss_fn, data, dirs[0], steps=3, progress=False, callback=1)
