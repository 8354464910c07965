"""lanczos and spectral_density (SLQ): the Lanczos relation and Gauss quadrature exactness."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from linalg_helpers import FunctionOperator, make_spectrum, spectra, with_spectrum

import curvlab as cl
from curvlab import DenseOperator, SpectralDensity, lanczos, spectral_density


@settings(max_examples=20, deadline=None)
@given(spec=spectra(min_n=5, max_n=40), num_iter=st.integers(1, 12), seed=st.integers(0, 99))
def test_lanczos_relation(spec, num_iter, seed):
    kind, eigs, mseed = spec
    op = with_spectrum(eigs, seed=mseed)
    A = op.matrix
    res = lanczos(op, num_iter, seed=seed)
    m = res.num_iter
    assert m <= num_iter and res.num_matvecs == m and res.seed == seed
    V, T = res.basis, res.tridiagonal()
    assert torch.allclose(V.T @ V, torch.eye(m, dtype=A.dtype), atol=1e-10)
    assert torch.allclose(V.T @ A @ V, T, atol=1e-9 * float(eigs.abs().max()))
    # A V - V T is zero except the last column, of norm residual_norm
    R = A @ V - V @ T
    assert torch.allclose(
        R[:, :-1], torch.zeros_like(R[:, :-1]), atol=1e-9 * float(eigs.abs().max())
    )
    assert float(R[:, -1].norm()) == pytest.approx(
        res.residual_norm, abs=1e-9 * float(eigs.abs().max())
    )
    if m < num_iter:  # stopped early: the Krylov space is invariant, the Ritz values exact
        theta = res.ritz()[0]
        dist = (theta[:, None] - eigs[None, :]).abs().min(dim=1).values
        assert float(dist.max()) < 1e-8 * float(eigs.abs().max())


def test_lanczos_low_rank_stops_at_invariant_subspace():
    eigs = torch.zeros(30, dtype=torch.float64)
    eigs[:3] = torch.tensor([2.0, 1.0, -1.0], dtype=torch.float64)
    op = with_spectrum(eigs, seed=0)
    res = lanczos(op, 10, seed=0)
    assert res.num_iter == 4  # 3 nonzero eigenvalues plus the null space component
    assert res.residual_norm == 0.0
    assert torch.allclose(
        res.ritz()[0], torch.tensor([-1.0, 0.0, 1.0, 2.0], dtype=torch.float64), atol=1e-10
    )


def test_lanczos_without_reorthogonalization_and_v0():
    op = with_spectrum(torch.linspace(1.0, 2.0, 20, dtype=torch.float64), seed=1)
    v0 = torch.ones(20, dtype=torch.float64)
    a = lanczos(op, 5, v0=v0, reorthogonalize=False)
    b = lanczos(op, 5, v0=3 * v0)
    assert a.seed is None
    assert torch.allclose(a.alpha, b.alpha) and torch.allclose(a.beta, b.beta)


def test_lanczos_bad_input():
    op = with_spectrum(torch.arange(4.0), seed=0)
    with pytest.raises(ValueError, match="num_iter must be an integer >= 1"):
        lanczos(op, 0)
    with pytest.raises(ValueError, match="v0"):
        lanczos(op, 2, v0=torch.ones(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="zero"):
        lanczos(op, 2, v0=torch.zeros(4, dtype=torch.float64))
    with pytest.raises(ValueError, match="NaN or Inf"):
        lanczos(FunctionOperator(lambda V: V / 0.0 - V / 0.0, 4), 2, seed=0)


# --------------------------------------------------------------------------------------- SLQ
@settings(max_examples=20, deadline=None)
@given(
    spec=spectra(min_n=6, max_n=40),
    num_iter=st.integers(1, 10),
    num_probes=st.integers(1, 4),
    seed=st.integers(0, 99),
)
def test_slq_gauss_quadrature_is_exact(spec, num_iter, num_probes, seed):
    kind, eigs, mseed = spec
    op = with_spectrum(eigs, seed=mseed)
    A = op.matrix
    g = torch.Generator().manual_seed(seed)
    Z = torch.randn(A.shape[0], num_probes, generator=g, dtype=torch.float64)
    sd = spectral_density(op, num_iter=num_iter, probes=Z)
    assert sd.nodes.shape == (num_probes, num_iter) == sd.weights.shape
    assert torch.allclose(sd.weights.sum(1), torch.ones(num_probes, dtype=torch.float64))
    assert bool((sd.weights >= 0).all())
    scale = float(eigs.abs().max())
    # support inside [lambda_min, lambda_max]
    lo, hi = float(eigs.min()), float(eigs.max())
    assert float(sd.nodes.min()) >= lo - 1e-9 * scale and float(sd.nodes.max()) <= hi + 1e-9 * scale
    # sum_i w_i t_i^p = v^T A^p v / ||v||^2 for p <= 2 num_iter - 1
    for q in range(num_probes):
        v = Z[:, q]
        Apv = v.clone()
        for p in range(2 * num_iter):
            quad = float((sd.weights[q] * sd.nodes[q] ** p).sum())
            exact = float(v @ Apv) / float(v @ v)
            assert quad == pytest.approx(exact, rel=1e-7, abs=1e-9 * scale**p)
            Apv = A @ Apv


def test_slq_batched_products_and_breakdown_per_probe():
    # rank-2 matrix: every probe's Krylov space is invariant after 3 steps
    eigs = torch.zeros(50, dtype=torch.float64)
    eigs[:2] = torch.tensor([4.0, -1.0], dtype=torch.float64)
    dense = with_spectrum(eigs, seed=0)
    calls = []

    def fn(V):
        calls.append(V.shape[1])
        return dense.matrix @ V

    op = FunctionOperator(fn, 50)
    sd = spectral_density(op, num_probes=5, num_iter=20, seed=0)
    assert calls == [5, 5, 5]  # one block per step, then every probe stopped
    assert sd.num_matvecs == 15 and sd.seed == 0 and sd.dim == 50
    pos = sd.weights > 0
    exact = torch.tensor([-1.0, 0.0, 4.0], dtype=torch.float64)
    dist = (sd.nodes[pos][:, None] - exact[None, :]).abs().min(dim=1).values
    assert float(dist.max()) < 1e-8
    # the weight of each eigenvalue estimates its share of the spectrum
    w4 = (sd.weights * (sd.nodes - 4.0).abs().lt(1e-8)).sum(1).mean()
    assert 0.0 < float(w4) < 0.2


def test_slq_trace_and_density_integrate():
    eigs = make_spectrum("outlier_bulk", 200, seed=0)
    op = with_spectrum(eigs, seed=0)
    moments = []
    for s in range(20):
        sd = spectral_density(op, num_probes=5, num_iter=15, seed=s)
        moments.append(sd.dim * sd.moment(1))
    mean = sum(moments) / len(moments)
    assert mean == pytest.approx(
        float(eigs.sum()), abs=4 * float(torch.tensor(moments).std()) / 20**0.5
    )
    grid = torch.linspace(-5.0, 35.0, 20001, dtype=torch.float64)
    dens = sd.evaluate(grid, sigma=0.05)
    assert float(torch.trapezoid(dens, grid)) == pytest.approx(1.0, abs=1e-6)
    assert bool((dens >= 0).all())
    # default grid and sigma
    d = sd.evaluate()
    assert d.shape == (1000,) and bool(torch.isfinite(d).all())
    assert sd.default_sigma() > 0


def test_spectral_density_evaluate_closed_form():
    nodes = torch.tensor([[0.0, 2.0]], dtype=torch.float64)
    weights = torch.tensor([[0.25, 0.75]], dtype=torch.float64)
    sd = SpectralDensity(nodes=nodes, weights=weights, num_matvecs=0, seed=None)
    x = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)
    sigma = 0.5
    phi = lambda t: torch.exp(-0.5 * (t / sigma) ** 2) / (sigma * (2 * torch.pi) ** 0.5)  # noqa: E731
    expected = 0.25 * phi(x) + 0.75 * phi(x - 2.0)
    assert torch.allclose(sd.evaluate(x, sigma), expected)
    assert torch.allclose(sd.evaluate([0.0, 1.0, 2.0], sigma), expected)
    with pytest.raises(ValueError, match="sigma"):
        sd.evaluate(x, sigma=0.0)


def test_spectral_density_plot_delegates():
    pytest.importorskip("curvlab.plot")
    import matplotlib

    matplotlib.use("Agg")
    op = with_spectrum(torch.linspace(0.0, 1.0, 20, dtype=torch.float64), seed=0)
    ax = spectral_density(op, num_probes=2, num_iter=5, seed=0).plot()
    assert ax is not None


def test_spectral_density_reproducible_and_bad_input():
    op = with_spectrum(torch.linspace(0.0, 1.0, 20, dtype=torch.float64), seed=0)
    a = spectral_density(op, num_probes=3, num_iter=4, seed=1)
    b = spectral_density(op, num_probes=3, num_iter=4, seed=1)
    assert torch.equal(a.nodes, b.nodes) and torch.equal(a.weights, b.weights)
    assert a.num_matvecs == 12
    with pytest.raises(ValueError, match="num_iter must be an integer >= 1"):
        spectral_density(op, num_iter=0)
    with pytest.raises(ValueError, match="num_probes must be an integer >= 1"):
        spectral_density(op, num_probes=0)
    with pytest.raises(ValueError, match="probes"):
        spectral_density(op, probes=torch.ones(3, 2, dtype=torch.float64))
    with pytest.raises(TypeError, match="DenseOperator"):
        spectral_density(torch.eye(3))


def test_spectral_density_float32_and_hessian():
    op = DenseOperator(torch.diag(torch.linspace(-1.0, 1.0, 30)))
    sd = spectral_density(op, num_probes=2, num_iter=8, seed=0)
    assert sd.nodes.dtype == torch.float32
    assert torch.allclose(sd.weights.sum(1), torch.ones(2), atol=1e-5)
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1)).double()
    data = [(torch.randn(10, 2, dtype=torch.float64), torch.randn(10, 1, dtype=torch.float64))]
    H = cl.HessianOperator(model, nn.MSELoss(), data)
    from reference import dense_hessian

    eigs = torch.linalg.eigvalsh(dense_hessian(model, nn.MSELoss(), data))
    sd = spectral_density(H, num_probes=3, num_iter=H.shape[0], seed=0, reorthogonalize=True)
    # full Krylov space (with reorthogonalization, as documented): every node is an eigenvalue
    pos = sd.weights > 1e-12
    dist = (sd.nodes[pos][:, None] - eigs[None, :]).abs().min(dim=1).values
    assert float(dist.max()) < 1e-8
