"""Checks of the data contract on inputs that used to give silent wrong numbers (issue 14).

Uses only the public API of every curvlab version since the operators existed, so that the same
command measures a checkout before and after a change::

    python -m benchmarks.data_contract            # this checkout
    PYTHONPATH=/path/to/old/checkout python -m benchmarks.data_contract

1. A shuffling DataLoader over a 1.1M-parameter MLP with 20 batches and a graph cache that
   holds about half of the batch graphs: does construction raise, and with
   ``check_deterministic=False`` how far are three products from the unshuffled product?
2. The empirical Fisher against a per-sample loop with the normalization
   ``(1/M) sum_n grad t_n grad t_n^T`` (``M`` loss entries), and its average over labels
   drawn from the model against the GGN (trace ratios; 1 is right).
"""

from __future__ import annotations

import argparse
import warnings

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import curvlab as cl


def shuffled_loader(quick: bool) -> None:
    torch.manual_seed(0)
    d_in, width, n_batches, bs = (256, 1024, 20, 64) if not quick else (64, 256, 20, 32)
    model = nn.Sequential(
        nn.Linear(d_in, width), nn.Tanh(), nn.Linear(width, 768), nn.Tanh(), nn.Linear(768, 10)
    )
    n = sum(p.numel() for p in model.parameters())
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(n_batches * bs, d_in, generator=gen)
    y = torch.randint(0, 10, (n_batches * bs,), generator=gen)
    loss_fn = nn.CrossEntropyLoss()
    fixed = DataLoader(TensorDataset(X, y), batch_size=bs, shuffle=False)
    ref_op = cl.HessianOperator(model, loss_fn, fixed, graph_cache_mb=0)
    v = torch.randn(n, generator=gen)
    ref = ref_op @ v
    probe = cl.HessianOperator(model, loss_fn, fixed, check_deterministic=False)
    probe @ v
    per_batch = probe._graph_bytes / max(len(probe._graphs), 1)
    budget = 0.5 * n_batches * per_batch / 2**20
    print(f"MLP with {n:,} parameters, {n_batches} batches of {bs}; graph cache {budget:.0f} MiB")
    loader = DataLoader(
        TensorDataset(X, y), batch_size=bs, shuffle=True, generator=torch.Generator().manual_seed(1)
    )
    try:
        cl.HessianOperator(model, loss_fn, loader, graph_cache_mb=budget)
        print("  shuffle=True, default check: constructed, no error")
    except ValueError as err:
        print(f"  shuffle=True, default check: ValueError: {str(err)[:110]}...")
    H = cl.HessianOperator(model, loss_fn, loader, graph_cache_mb=budget, check_deterministic=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i in range(3):
            hv = H @ v
            err = float(torch.linalg.vector_norm(hv - ref) / torch.linalg.vector_norm(ref))
            print(f"  shuffle=True, check off: product {i + 1} relative error {err:.2e}")
    for w in caught:
        print(f"  warning: {str(w.message)[:110]}...")


def _per_sample_trace(model, loss_fn, X, y) -> float:
    """trace of (1/M) sum_n grad t_n grad t_n^T by a loop over samples (float64)."""
    single = type(loss_fn)(reduction="sum")
    total, entries = 0.0, 0
    params = list(model.parameters())
    for i in range(X.shape[0]):
        t = single(model(X[i : i + 1]), y[i : i + 1])
        g = torch.autograd.grad(t, params)
        total += float(sum((gi**2).sum() for gi in g))
        entries += y[i].numel()
    return total / entries


class TokenModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 4)

    def forward(self, x):  # (B, T, 3) -> (B, V=4, T)
        return self.lin(torch.tanh(x)).transpose(1, 2)


def _problem(kind: str, C: int, n: int = 8):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    if kind == "tokens":
        model = TokenModel().double()
        X = torch.randn(n, 5, 3, generator=gen, dtype=torch.float64)
        return model, nn.CrossEntropyLoss(), X, torch.randint(0, 4, (n, 5), generator=gen)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, C)).double()
    X = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    if kind == "mse":
        return model, nn.MSELoss(), X, torch.randn(n, C, generator=gen, dtype=torch.float64)
    return model, nn.CrossEntropyLoss(), X, torch.randint(0, C, (n,), generator=gen)


def _sample(kind, out, gen):
    if kind == "mse":  # exp(-(f - y)^2): variance 1/2
        return out + torch.randn(out.shape, generator=gen, dtype=out.dtype) * 0.5**0.5
    p = torch.softmax(out, dim=1).movedim(1, -1)
    return torch.multinomial(p.reshape(-1, p.shape[-1]), 1, generator=gen).reshape(p.shape[:-1])


def empirical_fisher(draws: int) -> None:
    print("empirical Fisher: trace(curvlab EF) / trace(per-sample loop), and")
    print(f"  trace(mean of EF over {draws} label draws from the model) / trace(GGN)")
    for kind, C in [("mse", 1), ("mse", 2), ("mse", 3), ("ce", 3), ("tokens", 4)]:
        model, loss_fn, X, y = _problem(kind, C)
        F = cl.EmpiricalFisherOperator(model, loss_fn, [(X, y)])
        ratio_loop = float(torch.trace(F.to_dense())) / _per_sample_trace(model, loss_fn, X, y)
        with torch.no_grad():
            out = model(X)
        gen = torch.Generator().manual_seed(12345)
        Xr = X.repeat(draws, *[1] * (X.dim() - 1))
        yr = _sample(kind, out.repeat(draws, *[1] * (out.dim() - 1)), gen)
        Fr = cl.EmpiricalFisherOperator(model, loss_fn, [(Xr, yr)], check_deterministic=False)
        G = cl.GGNOperator(model, loss_fn, [(X, y)])
        ratio_ggn = float(torch.trace(Fr.to_dense()) / torch.trace(G.to_dense()))
        label = f"{kind} C={C}" if kind != "tokens" else "CE over (B, V=4, T=5)"
        print(f"  {label:22s} EF/loop {ratio_loop:.4f}   E[EF]/GGN {ratio_ggn:.4f}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a smaller MLP")
    ap.add_argument("--draws", type=int, default=4000)
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    print(f"curvlab at {cl.__file__}")
    shuffled_loader(args.quick)
    empirical_fisher(args.draws)


if __name__ == "__main__":
    main()
