"""Every estimator follows the operator's device and dtype (runs where CUDA is available)."""

import pytest
import torch
from linalg_helpers import make_spectrum, with_spectrum

import curvlab as cl

devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", devices)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_estimators_follow_device_and_dtype(device, dtype):
    eigs = make_spectrum("outlier_bulk", 40, seed=0)
    op = cl.DenseOperator(with_spectrum(eigs, seed=0).matrix.to(device=device, dtype=dtype))
    ref = torch.sort(eigs).values

    res = cl.eigsh(op, k=2, seed=0)
    assert res.eigenvalues.device.type == device and res.eigenvalues.dtype == dtype
    assert res.eigenvectors.device.type == device and res.residuals.device.type == device
    tol = 1e-3 if dtype == torch.float32 else 1e-9
    assert torch.allclose(res.eigenvalues.double().cpu(), ref[-2:], atol=tol * 30)

    p = cl.power_iteration(op, seed=0, tol=1e-5, max_iter=500)
    assert p.eigenvectors.device.type == device
    assert float(p.eigenvalues[0]) == pytest.approx(30.0, rel=1e-4)

    sd = cl.spectral_density(op, num_probes=3, num_iter=10, seed=0)
    assert sd.nodes.device.type == device and sd.nodes.dtype == dtype
    assert sd.evaluate(sigma=0.1).device.type == device

    tr = cl.trace(op, num_matvecs=30, seed=0, method="hutch++")
    assert isinstance(tr.estimate, float)
    d = cl.diagonal(op, num_matvecs=8, seed=0)
    assert d.estimate.device.type == device and d.estimate.dtype == dtype

    gap = cl.spectral_gap(op, seed=0)
    assert gap.residuals.device.type == device

    b = torch.ones(40, dtype=dtype, device=device)
    x = cl.cg(op, b, damping=5.0).x
    assert x.device.type == device

    # a CPU generator drives a run on any device
    g = torch.Generator().manual_seed(0)
    assert isinstance(cl.eigsh(op, k=1, seed=g).seed, int)
