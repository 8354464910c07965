"""Independent dense references for the operator tests (float64, small problems).

Nothing here uses curvlab's product code: the references come from ``torch.func.hessian``,
``torch.func.jacrev`` and per-sample loops.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call, hessian, jacrev


def flat_params(model, names=None):
    named = dict(model.named_parameters())
    names = names or list(named)
    return names, torch.cat([named[n].detach().reshape(-1) for n in names])


def _split(flat, model, names):
    named = dict(model.named_parameters())
    out, start = {}, 0
    for n in names:
        p = named[n]
        out[n] = flat[start : start + p.numel()].view_as(p)
        start += p.numel()
    return out


def risk_fn(model, loss_fn, data, names=None):
    """Flat-parameter function of the full-data risk, written from scratch (one big batch)."""
    names, _ = flat_params(model, names)
    X = torch.cat([b[0] for b in data])
    y = torch.cat([b[1] for b in data])

    def f(flat):
        out = functional_call(model, _split(flat, model, names), (X,))
        return loss_fn(out, y)

    return f


def dense_hessian(model, loss_fn, data, names=None):
    names, theta = flat_params(model, names)
    return hessian(risk_fn(model, loss_fn, data, names))(theta)


def dense_ggn(model, loss_fn, data, names=None):
    """``J^T H_out J`` over the concatenated data, from dense Jacobians."""
    names, theta = flat_params(model, names)
    X = torch.cat([b[0] for b in data])
    y = torch.cat([b[1] for b in data])

    def out_fn(flat):
        return functional_call(model, _split(flat, model, names), (X,))

    out = out_fn(theta)
    J = jacrev(out_fn)(theta).reshape(out.numel(), -1)
    H_out = hessian(lambda o: loss_fn(o.reshape(out.shape), y))(out.reshape(-1).detach())
    return J.T @ H_out @ J


def per_sample_loss(loss_fn, out_n, y_n):
    """Sample n's loss summed over its entries (outputs, sequence positions): ``t_n``."""
    single = type(loss_fn)(reduction="sum")
    return single(out_n.unsqueeze(0), y_n.unsqueeze(0))


def dense_empirical_fisher(model, loss_fn, data, names=None):
    """``(1/M) sum_n grad t_n grad t_n^T`` with ``M`` the number of loss entries of the data
    (samples times outputs, or counted positions) for a mean-reduced loss, ``M = 1`` for a sum:
    a per-sample loop (the definition whose expectation under the model's labels is the GGN)."""
    names, theta = flat_params(model, names)
    X = torch.cat([b[0] for b in data])
    y = torch.cat([b[1] for b in data])
    N = X.shape[0]
    F = torch.zeros(theta.numel(), theta.numel(), dtype=theta.dtype)
    entries = 0
    for n in range(N):

        def ln(flat, n=n):
            out = functional_call(model, _split(flat, model, names), (X[n : n + 1],))[0]
            return per_sample_loss(loss_fn, out, y[n])

        g = torch.func.grad(ln)(theta)
        F += torch.outer(g, g)
        if isinstance(loss_fn, nn.CrossEntropyLoss):  # one entry per counted position
            entries += int((y[n] != loss_fn.ignore_index).sum())
        else:  # one entry per output
            entries += y[n].numel()
    return F / entries if loss_fn.reduction == "mean" else F


def plain_hvp_operator(model, loss_fn, data, params, output=lambda out: out):
    """A SciPy operator on plain autograd double backward over ``data`` (batch-size
    weighted; math attention backend, which has a double backward): no curvlab product code.
    ``output`` maps the model's return value to the loss's input."""
    import numpy as np
    import scipy.sparse.linalg as sla
    from torch.nn.attention import SDPBackend, sdpa_kernel

    params = list(params)
    N = sum(len(y) for _, y in data)
    n = sum(p.numel() for p in params)
    dtype = params[0].dtype

    def matvec(v):
        v = torch.as_tensor(np.asarray(v).reshape(-1), dtype=dtype)
        vs, start = [], 0
        for p in params:
            vs.append(v[start : start + p.numel()].view_as(p))
            start += p.numel()
        total = torch.zeros(n, dtype=dtype)
        with sdpa_kernel(SDPBackend.MATH):
            for X, y in data:
                out = model(**X) if isinstance(X, dict) else model(X)
                loss = len(y) / N * loss_fn(output(out), y)
                g = torch.autograd.grad(loss, params, create_graph=True)
                h = torch.autograd.grad(g, params, vs)
                total += torch.cat([t.reshape(-1) for t in h])
        return total.numpy()

    return sla.LinearOperator((n, n), matvec=matvec, dtype=np.float64)


def arpack_top(model, loss_fn, data, params, output=lambda out: out, k=3):
    """The ``k`` largest Hessian eigenvalues (ascending) by ARPACK on :func:`plain_hvp_operator`."""
    import numpy as np
    import scipy.sparse.linalg as sla

    op = plain_hvp_operator(model, loss_fn, data, params, output)
    vals = sla.eigsh(op, k=k, which="LA", tol=1e-12, v0=np.ones(op.shape[0]))[0]
    return np.sort(vals)
