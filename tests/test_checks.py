"""One argument convention across the library (curvlab._checks, curvlab._random.check_seed):
a wrong type is a TypeError, a wrong value a ValueError, both naming the argument; numpy
integers are accepted wherever an int is."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import TensorDataset  # noqa: E402

import curvlab as cl  # noqa: E402
import curvlab.fourier as fr  # noqa: E402
import curvlab.landscape as ls  # noqa: E402
import curvlab.plot as cp  # noqa: E402
import curvlab.problems as pb  # noqa: E402
from curvlab._checks import check_nonneg, check_positive, check_real  # noqa: E402
from curvlab._random import check_seed  # noqa: E402

DT = torch.float64


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _op():
    return cl.DenseOperator(torch.diag(torch.arange(1.0, 8.0, dtype=DT)))


def _model_and_data():
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(6, 3, generator=gen, dtype=DT)
    y = torch.randint(0, 2, (6,), generator=gen)
    model = nn.Linear(3, 2).to(DT)
    return model, [(X, y)]


def _line(steps):
    model, data = _model_and_data()
    d = torch.ones(sum(p.numel() for p in model.parameters()), dtype=DT)
    return ls.line(model, nn.CrossEntropyLoss(), data, d, steps=steps, progress=False)


def _tracker(every):
    x = torch.arange(32, dtype=DT) / 32
    y = torch.sin(2 * math.pi * 2 * x)
    return fr.SpectralBiasTracker(x, y, [2], every=every)


def _density():
    return cl.spectral_density(_op(), num_probes=2, num_iter=5, seed=0)


def _dataset():
    return TensorDataset(torch.arange(6.0), torch.arange(6))


# (call with the argument set to a value, argument name, a value that is a bad value)
CASES = {
    "eigsh k": (lambda v: cl.eigsh(_op(), k=v, seed=0), "k", 0),
    "eigsh block_size": (lambda v: cl.eigsh(_op(), k=2, block_size=v, seed=0), "block_size", 0),
    "eigsh max_matvecs": (
        lambda v: cl.eigsh(_op(), k=2, max_matvecs=v, seed=0),
        "max_matvecs",
        -1,
    ),
    "eigsh tol": (lambda v: cl.eigsh(_op(), k=2, tol=v, seed=0), "tol", -1e-3),
    "lanczos num_iter": (lambda v: cl.lanczos(_op(), v, seed=0), "num_iter", 0),
    "spectral_density num_probes": (
        lambda v: cl.spectral_density(_op(), num_probes=v, num_iter=5, seed=0),
        "num_probes",
        0,
    ),
    "spectral_density num_iter": (
        lambda v: cl.spectral_density(_op(), num_probes=2, num_iter=v, seed=0),
        "num_iter",
        -3,
    ),
    "SpectralDensity.evaluate sigma": (lambda v: _density().evaluate(sigma=v), "sigma", 0.0),
    "trace num_matvecs": (lambda v: cl.trace(_op(), num_matvecs=v, seed=0), "num_matvecs", 0),
    "trace batch_size": (
        lambda v: cl.trace(_op(), num_matvecs=6, batch_size=v, seed=0),
        "batch_size",
        0,
    ),
    "power_iteration k": (lambda v: cl.power_iteration(_op(), k=v, seed=0), "k", 0),
    "power_iteration max_iter": (
        lambda v: cl.power_iteration(_op(), max_iter=v, seed=0),
        "max_iter",
        0,
    ),
    "power_iteration tol": (lambda v: cl.power_iteration(_op(), tol=v, seed=0), "tol", -1.0),
    "cg max_iter": (lambda v: cl.cg(_op(), torch.ones(7, dtype=DT), max_iter=v), "max_iter", 0),
    "cg tol": (lambda v: cl.cg(_op(), torch.ones(7, dtype=DT), tol=v), "tol", 0.0),
    "cg damping": (lambda v: cl.cg(_op(), torch.ones(7, dtype=DT), damping=v), "damping", -1.0),
    "GGNOperator mc_samples": (
        lambda v: cl.GGNOperator(
            *_model_and_data()[:1],
            nn.CrossEntropyLoss(),
            _model_and_data()[1],
            mc_samples=v,
            seed=0,
        ),
        "mc_samples",
        -1,
    ),
    "landscape.line steps": (_line, "steps", 0),
    "landscape.random_directions num": (
        lambda v: ls.random_directions(nn.Linear(3, 2), num=v, seed=0),
        "num",
        0,
    ),
    "landscape.eigen_directions num": (
        lambda v: ls.eigen_directions(_op(), num=v, seed=0),
        "num",
        0,
    ),
    "SpectralBiasTracker every": (_tracker, "every", 0),
    "nudft chunk_size": (
        lambda v: fr.nudft(torch.arange(8.0) / 8, torch.ones(8), [1], chunk_size=v),
        "chunk_size",
        0,
    ),
    "filtered_error block_size": (
        lambda v: fr.filtered_error(
            torch.randn(8, 2), torch.randn(8), torch.randn(8), 1.0, block_size=v
        ),
        "block_size",
        0,
    ),
    "filtered_error delta": (
        lambda v: fr.filtered_error(torch.randn(8, 2), torch.randn(8), torch.randn(8), v),
        "delta",
        -1.0,
    ),
    "plot.density sigma": (lambda v: cp.density(_density(), sigma=v), "sigma", -1.0),
    "problems.loaders batch_size": (
        lambda v: pb.loaders(_dataset(), batch_size=v, seed=0),
        "batch_size",
        0,
    ),
    "problems.loaders test_batch_size": (
        lambda v: pb.loaders(_dataset(), _dataset(), batch_size=2, test_batch_size=v, seed=0),
        "test_batch_size",
        0,
    ),
    "problems.sinusoids n": (lambda v: pb.sinusoids(n=v), "n", 1),
    "problems.matrix_factorization m": (
        lambda v: pb.matrix_factorization(n_matrices=2, m=v, n=4, rank=2),
        "m",
        0,
    ),
    "problems.MatrixFactorization reg": (
        lambda v: pb.MatrixFactorization(4, 4, 2, reg=v),
        "reg",
        -0.1,
    ),
    "problems.rahimi_recht_matrix xdim": (
        lambda v: pb.rahimi_recht_matrix(5.0, xdim=v, ydim=4),
        "xdim",
        0,
    ),
    "problems.rahimi_recht_matrix c": (lambda v: pb.rahimi_recht_matrix(v), "c", 0.5),
    "problems.attention_regression n_test": (
        lambda v: pb.attention_regression(n_train=4, n_test=v, seq_len=3, embed_dim=4),
        "n_test",
        -1,
    ),
    "problems.digits channels": (lambda v: pb.digits(channels=v), "channels", 2),
    "problems.digits size": (lambda v: pb.digits(size=v), "size", 0),
    "problems.digits test_fraction": (
        lambda v: pb.digits(test_fraction=v),
        "test_fraction",
        1.5,
    ),
    "problems.image_classification size": (
        lambda v: pb.image_classification("mlp", size=v),
        "size",
        0,
    ),
    "problems.DeepLinear dims": (lambda v: pb.DeepLinear(3, v), "dims", 0),
    "problems.MLP hidden": (lambda v: pb.MLP(3, (4, v), 2), "layer sizes", 0),
    "problems.ResNet widths": (lambda v: pb.ResNet(widths=(4, v)), "widths", 0),
    "problems.ResNet blocks": (lambda v: pb.ResNet(widths=(4, 8), blocks=(1, v)), "blocks", 0),
    "problems.Transformer num_layers": (
        lambda v: pb.Transformer(in_features=4, d_model=8, nhead=2, num_layers=v),
        "num_layers",
        0,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_string_is_a_type_error_naming_the_argument(case):
    call, name, _ = CASES[case]
    with pytest.raises(TypeError, match=name):
        call("3")


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_value_is_a_value_error_naming_the_argument(case):
    call, name, bad = CASES[case]
    with pytest.raises(ValueError, match=name):
        call(bad)


@pytest.mark.parametrize(
    "case", ["eigsh k", "lanczos num_iter", "trace num_matvecs", "power_iteration k"]
)
def test_a_float_is_a_type_error_where_an_int_is_expected(case):
    call, name, _ = CASES[case]
    with pytest.raises(TypeError, match=f"{name} must be an integer, got float"):
        call(2.0)


def test_numpy_integers_are_accepted():
    k = np.int64(2)
    assert cl.eigsh(_op(), k=k, seed=0).eigenvalues.shape == (2,)
    assert cl.trace(_op(), num_matvecs=np.int32(6), seed=0).num_matvecs <= 6
    assert _line(np.int64(3)).coords.shape == (3,)
    assert _tracker(np.int64(4)).every == 4
    model, data = _model_and_data()
    assert cl.GGNOperator(model, nn.CrossEntropyLoss(), data, mc_samples=np.int64(1), seed=0)
    train, _ = pb.loaders(_dataset(), batch_size=np.int64(4), seed=np.int64(0))
    assert [len(y) for _, y in train] == [4, 2]
    X, _ = pb.digits(channels=np.int64(3), seed=np.int64(1)).tensors
    assert X.shape[1] == 3
    assert pb.DeepLinear(np.int64(3), 2)(torch.ones(1, 3)).shape == (1, 2)


def test_tensors_and_infinity_where_they_were_accepted():
    # a one-element tensor tolerance or sigma works as before; filtered_error's delta = inf
    # is the mean kernel (documented)
    assert cl.eigsh(_op(), k=2, tol=torch.tensor(1e-6), seed=0).converged
    assert torch.isfinite(_density().evaluate(sigma=torch.tensor(0.5))).all()
    X, y = torch.randn(8, 2), torch.randn(8)
    lo, hi = fr.filtered_error(X, y, torch.zeros(8), math.inf)
    assert math.isfinite(lo) and math.isfinite(hi)
    with pytest.raises(ValueError, match="delta"):
        fr.filtered_error(X, y, torch.zeros(8), math.nan)
    with pytest.raises(ValueError, match="tol must be finite"):
        cl.eigsh(_op(), k=2, tol=math.inf, seed=0)


def test_allow_inf():
    assert check_real(math.inf, "x", allow_inf=True) == math.inf
    assert check_positive(math.inf, "x", allow_inf=True) == math.inf
    assert check_nonneg(-0.0, "x", allow_inf=True) == 0.0
    with pytest.raises(ValueError, match="x must be a number"):
        check_real(math.nan, "x", allow_inf=True)
    with pytest.raises(ValueError, match="x must be positive"):
        check_positive(-math.inf, "x", allow_inf=True)
    with pytest.raises(ValueError, match="x must be finite"):
        check_real(math.inf, "x")


# -- seeds: one check (curvlab._random.check_seed); the problems refuse None -----------------
def test_check_seed_returns_the_seed():
    g = torch.Generator()
    assert check_seed(None) is None and check_seed(g) is g and check_seed(3) == 3
    assert check_seed(np.int64(3), allow_none=False) == 3
    with pytest.raises(TypeError, match="seed must be an int or a torch.Generator, got NoneType"):
        check_seed(None, allow_none=False)


@pytest.mark.parametrize(
    "build",
    [
        lambda s: pb.loaders(_dataset(), batch_size=2, seed=s),
        lambda s: pb.sinusoids(n=32, seed=s),
        lambda s: pb.rahimi_recht_matrix(5.0, xdim=3, ydim=4, seed=s),
        lambda s: pb.DeepLinear(3, 2, seed=s),
        lambda s: pb.digits(seed=s),
    ],
    ids=["loaders", "sinusoids", "rahimi_recht_matrix", "DeepLinear", "digits"],
)
def test_problem_seeds(build):
    with pytest.raises(TypeError, match="seed must be an int"):
        build(None)
    with pytest.raises(TypeError, match="seed must be an int"):
        build("0")
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        build(-1)
    build(np.int64(0))
