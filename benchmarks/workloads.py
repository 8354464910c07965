"""Deterministic, library-independent benchmark workloads.

Every workload is a plain ``nn.Module``, a loss with ``reduction="mean"`` and a list of
``(X, y)`` batches, built from fixed seeds with nothing but torch (and scikit-learn's embedded
digits). Nothing here imports curvlab or a peer library: each adapter receives the same
objects.

========  ====================================================================================
``W1``    MLP 64-128-128-10 (tanh) on 1,024 standardized digits (8x8), 8 batches of 128
``W2``    LeNet-5 (tanh, average pooling) on 512 digits upsampled to 28x28, 4 batches of 128
``W3``    small CNN (two 3x3 convolutions, ReLU, max pooling) on 256 random 3x32x32 inputs
          with random labels, 2 batches of 128
``W4``    small Transformer encoder (math attention, pre-norm, 2 blocks, d=32) on 256
          synthetic token sequences of length 16, 2 batches of 128
========  ====================================================================================

Each workload exists in two states: ``"init"`` (the parameters at a fixed seed) and
``"trained"`` (after a short deterministic SGD run from ``"init"``; trained spectra have
outliers, initial ones are clustered). Trained parameters are cached on disk (see
:func:`cache_dir`) so that the processes of one benchmark run share them.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

__all__ = [
    "WORKLOADS",
    "STATES",
    "Workload",
    "build",
    "gradient",
    "fingerprint",
    "cache_dir",
]

WORKLOADS = ("W1", "W2", "W3", "W4")
STATES = ("init", "trained")

DESCRIPTIONS = {
    "W1": "MLP 64-128-128-10 tanh, 1,024 digits, 8 batches of 128",
    "W2": "LeNet-5 (tanh), 512 digits at 28x28, 4 batches of 128",
    "W3": "small CNN, 256 random 3x32x32 inputs, 2 batches of 128",
    "W4": "Transformer encoder (math attention), 256 token sequences of 16, 2 batches",
}

# short training runs: (epochs over the batches, SGD learning rate, momentum)
TRAINING = {
    "W1": (4, 0.1, 0.9),
    "W2": (6, 0.05, 0.9),
    "W3": (6, 0.02, 0.9),
    "W4": (20, 0.05, 0.9),
}


@dataclass
class Workload:
    """A model, its loss and its data, ready to hand to any library.

    ``batches`` is a list of ``(X, y)`` pairs (re-iterable, never shuffled); the empirical
    risk is the batch-size-weighted mean of ``loss_fn`` over them.
    """

    name: str
    state: str
    model: nn.Module
    loss_fn: nn.Module
    batches: list[tuple[Tensor, Tensor]]
    description: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def params(self) -> list[Tensor]:
        return [p for p in self.model.parameters() if p.requires_grad]

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.params)

    @property
    def num_data(self) -> int:
        return sum(int(y.shape[0]) for _, y in self.batches)

    @property
    def dtype(self) -> torch.dtype:
        return self.params[0].dtype

    @property
    def device(self) -> torch.device:
        return self.params[0].device


# ------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------
def _digits_raw() -> tuple[Tensor, Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    X = torch.tensor(d.data, dtype=torch.float64)  # (1797, 64), grey levels 0..16
    y = torch.tensor(d.target, dtype=torch.int64)
    return X, y


def _split(X: Tensor, y: Tensor, batch_size: int) -> list[tuple[Tensor, Tensor]]:
    return [(X[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(y), batch_size)]


def _data_w1():
    X, y = _digits_raw()
    X, y = X[:1024], y[:1024]
    X = (X - X.mean(0)) / (X.std(0) + 1e-8)  # per-pixel standardization
    return X, y, 128


def _data_w2():
    import torch.nn.functional as F

    X, y = _digits_raw()
    X, y = X[:512].reshape(-1, 1, 8, 8), y[:512]
    X = F.interpolate(X, size=(28, 28), mode="bilinear", align_corners=False)
    X = (X - X.mean()) / X.std()
    return X, y, 128


def _data_w3():
    gen = torch.Generator().manual_seed(3)
    X = torch.randn(256, 3, 32, 32, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 10, (256,), generator=gen)
    return X, y, 128


def _data_w4():
    gen = torch.Generator().manual_seed(4)
    tokens = torch.randint(0, 32, (256, 16), generator=gen)
    # a label that needs attention: the token at position 0 plus the last one, mod 10
    y = (tokens[:, 0] + tokens[:, -1]) % 10
    return tokens, y, 128


# ------------------------------------------------------------------------------------------
# models
# ------------------------------------------------------------------------------------------
def _mlp() -> nn.Module:
    return nn.Sequential(
        nn.Linear(64, 128), nn.Tanh(), nn.Linear(128, 128), nn.Tanh(), nn.Linear(128, 10)
    )


def _lenet5() -> nn.Module:
    """LeNet-5 for 28x28 input (first convolution padded by 2), tanh, average pooling."""
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2),
        nn.Tanh(),
        nn.AvgPool2d(2),
        nn.Conv2d(6, 16, 5),
        nn.Tanh(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(400, 120),
        nn.Tanh(),
        nn.Linear(120, 84),
        nn.Tanh(),
        nn.Linear(84, 10),
    )


def _small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 8 * 8, 10),
    )


class _Attention(nn.Module):
    """Multi-head self-attention written out (twice differentiable everywhere)."""

    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)

    def forward(self, x: Tensor) -> Tensor:
        B, T, D = x.shape
        h, dh = self.heads, D // self.heads
        q, k, v = self.qkv(x).view(B, T, 3, h, dh).permute(2, 0, 3, 1, 4)
        att = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(dh), dim=-1)
        return self.out((att @ v).transpose(1, 2).reshape(B, T, D))


class _Block(nn.Module):
    def __init__(self, d: int, heads: int, ff: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.attn = _Attention(d, heads)
        self.ln2 = nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, ff), nn.GELU(), nn.Linear(ff, d))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.ff(self.ln2(x))


class TinyTransformer(nn.Module):
    """Token embedding + learned positions, pre-norm blocks, mean pooling, linear head."""

    def __init__(self, vocab=32, length=16, d=32, heads=2, ff=64, layers=2, classes=10):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.zeros(length, d))
        self.blocks = nn.Sequential(*(_Block(d, heads, ff) for _ in range(layers)))
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, classes)

    def forward(self, tokens: Tensor) -> Tensor:
        h = self.embed(tokens) + self.pos[: tokens.shape[1]]
        return self.head(self.ln(self.blocks(h)).mean(dim=1))


_BUILDERS = {
    "W1": (_mlp, _data_w1, 1),
    "W2": (_lenet5, _data_w2, 2),
    "W3": (_small_cnn, _data_w3, 3),
    "W4": (TinyTransformer, _data_w4, 4),
}


def _init_model(name: str) -> nn.Module:
    make, _, seed = _BUILDERS[name]
    # torch's default initializers draw from the global RNG: run them under a fixed seed and
    # restore the caller's RNG state afterwards
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(1000 + seed)
        model = make()
        if name == "W4":
            with torch.no_grad():
                model.pos.normal_(0.0, 0.1)
    finally:
        torch.random.set_rng_state(state)
    return model


# ------------------------------------------------------------------------------------------
# gradient (the unit G), training, cache
# ------------------------------------------------------------------------------------------
def gradient(workload: Workload) -> list[Tensor]:
    """One full-data gradient with plain autograd: the unit ``G`` of every ratio.

    The same code runs in every adapter's process, so ``G`` is measured the same way for
    every library.
    """
    params = workload.params
    total = None
    N = workload.num_data
    for X, y in workload.batches:
        loss = workload.loss_fn(workload.model(X), y) * (y.shape[0] / N)
        g = torch.autograd.grad(loss, params)
        total = list(g) if total is None else [a + b for a, b in zip(total, g)]
    return total


def fingerprint(model: nn.Module) -> str:
    """A short hash of the parameter values (to key cached references)."""
    h = hashlib.sha256()
    for p in model.parameters():
        h.update(p.detach().to("cpu", torch.float64).numpy().tobytes())
    return h.hexdigest()[:16]


def cache_dir() -> Path:
    """Where trained parameters and references are cached.

    ``$CURVLAB_BENCH_CACHE`` if set, else ``$XDG_CACHE_HOME/curvlab-bench`` (by default
    ``~/.cache/curvlab-bench``).
    """
    env = os.environ.get("CURVLAB_BENCH_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "curvlab-bench"


def _train(name: str, model: nn.Module, batches, loss_fn) -> dict:
    """A short deterministic SGD run on CPU in float64 (the same on every machine)."""
    epochs, lr, momentum = TRAINING[name]
    model = model.double()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    losses = []
    for _ in range(epochs):
        for X, y in batches:
            X = X.double() if X.is_floating_point() else X
            opt.zero_grad()
            loss = loss_fn(model(X), y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
    return {"first_loss": losses[0], "last_loss": losses[-1], "steps": len(losses)}


def _trained_state(name: str, model: nn.Module, batches, loss_fn) -> tuple[dict, dict]:
    epochs, lr, momentum = TRAINING[name]
    tag = f"{name}-trained-e{epochs}-lr{lr}-m{momentum}-{torch.__version__}"
    path = cache_dir() / f"{tag}.pt"
    if path.exists():
        blob = torch.load(path, map_location="cpu", weights_only=True)
        return blob["state"], blob["info"]
    info = _train(name, model, batches, loss_fn)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save({"state": state, "info": info}, tmp)
    os.replace(tmp, path)
    return state, info


def build(
    name: str,
    state: str = "init",
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> Workload:
    """Build workload ``name`` (``"W1"``..``"W4"``) in ``state`` (``"init"`` or ``"trained"``).

    The parameters and data are the same bits on every call (fixed seeds; training in
    float64 on CPU, cached), then cast to ``dtype`` and moved to ``device``.
    """
    if name not in _BUILDERS:
        raise ValueError(f"unknown workload {name!r}; choose from {WORKLOADS}.")
    if state not in STATES:
        raise ValueError(f"unknown state {state!r}; choose from {STATES}.")
    _, make_data, _ = _BUILDERS[name]
    X, y, bs = make_data()
    batches64 = _split(X, y, bs)
    model = _init_model(name).double()
    loss_fn = nn.CrossEntropyLoss()
    meta: dict = {}
    if state == "trained":
        sd, info = _trained_state(name, model, batches64, loss_fn)
        model.load_state_dict(sd)
        meta["training"] = info
    model = model.to(device=device, dtype=dtype).eval()
    batches = [
        (
            Xb.to(device=device, dtype=dtype) if Xb.is_floating_point() else Xb.to(device),
            yb.to(device),
        )
        for Xb, yb in batches64
    ]
    return Workload(name, state, model, loss_fn, batches, DESCRIPTIONS[name], meta)
