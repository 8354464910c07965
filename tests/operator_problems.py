"""Models and data for the operator tests (float64, small): make_problem and its parts.

Shared by tests/operators/ and tests/test_risk.py (importable like ``reference``: tests/ is on
``sys.path`` through tests/conftest.py).
"""

import torch
from torch import nn

DT = torch.float64
LOSSES = ["ce", "mse", "bce"]
MODES = ["rev-rev", "fwd-rev"]


def make_loss(kind, reduction="mean"):
    return {
        "ce": nn.CrossEntropyLoss,
        "mse": nn.MSELoss,
        "bce": nn.BCEWithLogitsLoss,
    }[kind](reduction=reduction)


def make_targets(kind, n, out_dim, gen):
    if kind == "ce":
        return torch.randint(0, out_dim, (n,), generator=gen)
    if kind == "mse":
        return torch.randn(n, out_dim, generator=gen, dtype=DT)
    return torch.randint(0, 2, (n, out_dim), generator=gen).to(DT)


def make_mlp(in_dim, width, out_dim, seed, act=nn.Tanh):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(in_dim, width), act(), nn.Linear(width, out_dim)).to(DT)


class SmallCNN(nn.Module):
    def __init__(self, channels, out_dim):
        super().__init__()
        self.conv = nn.Conv2d(1, channels, 3)
        self.fc = nn.Linear(channels * 4, out_dim)

    def forward(self, x):
        h = torch.tanh(self.conv(x))
        h = nn.functional.avg_pool2d(h, 2)
        return self.fc(h.flatten(1))


def make_problem(kind, arch, width, n, seed, batch_sizes=None):
    gen = torch.Generator().manual_seed(seed)
    out_dim = 3
    if arch == "mlp":
        model = make_mlp(4, width, out_dim, seed)
        X = torch.randn(n, 4, generator=gen, dtype=DT)
    else:
        torch.manual_seed(seed)
        model = SmallCNN(width, out_dim).to(DT)
        X = torch.randn(n, 1, 6, 6, generator=gen, dtype=DT)
    y = make_targets(kind, n, out_dim, gen)
    sizes = batch_sizes or [n]
    data, start = [], 0
    for b in sizes:
        data.append((X[start : start + b], y[start : start + b]))
        start += b
    return model, data


def split_points(n, cuts):
    pts = sorted(set(c % (n - 1) + 1 for c in cuts))
    sizes, prev = [], 0
    for p in pts + [n]:
        sizes.append(p - prev)
        prev = p
    return sizes
