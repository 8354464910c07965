r"""
Spectral bias: low frequencies are learned first
================================================

Rahaman et al. (2019) fit a ReLU network to a sum of ten sinusoids of equal amplitude,

.. math::

   \lambda(x) = \sum_{i=1}^{10} A_i \sin(2\pi k_i x + \varphi_i), \qquad
   k = 5, 10, \dots, 50, \quad A_i = 1,

sampled at :math:`N = 200` points of :math:`[0, 1)`, with random phases, and watch the
network's output in the frequency domain during training. On the uniform grid
:math:`x_n = n / N` the discrete Fourier transform of the output at the integer frequency
:math:`k` measures how much of the component :math:`k` the network has picked up:
:func:`curvlab.fourier.dft_amplitudes` normalizes it so that a sinusoid of amplitude :math:`a`
gives exactly :math:`a`, and dividing by :math:`A_i` gives 1 for a learned component (their
:math:`2 |\hat f(k_i)| / A_i`). The result is the *spectral bias*: the network learns the
frequencies in increasing order.

The second metric is Xu et al.'s relative error :math:`|\hat h(k) - \hat y(k)| / |\hat y(k)|`
with the complex difference (:func:`curvlab.fourier.relative_error`), which also requires the
phase to be right: 0 means learned, 1 means nothing learned.

The network and the run are shrunk (3 hidden layers of 128 units, 3,000 full-batch Adam steps,
one seed) to run in well under a minute on two CPU cores; ``CURVLAB_FULL=1`` trains a 6-layer,
256-unit network (Rahaman et al.'s architecture) for longer, over three seeds.
"""

# %%
# The target
# ----------
import math

import matplotlib.pyplot as plt
import torch
from torch import nn

import curvlab.plot as clplot
from curvlab.fourier import SpectralBiasTracker, dft_amplitudes

WIDTH, DEPTH, STEPS, SEEDS, LR = 128, 3, 3_000, 1, 2e-3
# sphinx_gallery_start_ignore
import os

if os.environ.get("CURVLAB_FULL") == "1":  # Rahaman et al.'s network, three seeds
    WIDTH, DEPTH, STEPS, SEEDS, LR = 256, 6, 20_000, 3, 1e-3
# sphinx_gallery_end_ignore
EVERY = 50

N = 200
freqs = torch.arange(5, 55, 5)
amplitudes = torch.ones(10)
gen = torch.Generator().manual_seed(0)
phases = 2 * math.pi * torch.rand(10, generator=gen)
x = torch.arange(N) / N
y = (amplitudes[:, None] * torch.sin(2 * math.pi * freqs[:, None] * x + phases[:, None])).sum(0)

# The normalized DFT gives the amplitudes back exactly:
print("amplitudes:", " ".join(f"{a:.3f}" for a in dft_amplitudes(y, freqs).tolist()))

# %%
# Training with two trackers
# --------------------------
# :class:`~curvlab.fourier.SpectralBiasTracker` evaluates the model on the grid every
# ``EVERY`` steps (under ``torch.no_grad()``) and stores the metric at each frequency. We call
# ``update`` once before every optimizer step, so the first record is the initialization.


def mlp(width: int, depth: int) -> nn.Sequential:
    layers = [nn.Linear(1, width), nn.ReLU()]
    for _ in range(depth - 1):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(width, 1))


amp_runs, err_runs = [], []
for seed in range(SEEDS):
    torch.manual_seed(seed)  # the network's initialization
    model = mlp(WIDTH, DEPTH)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    amp = SpectralBiasTracker(x[:, None], y, freqs, amplitudes=amplitudes, every=EVERY)
    err = SpectralBiasTracker(x[:, None], y, freqs, metric="relative_error", every=EVERY)
    for _ in range(STEPS + 1):
        amp.update(model)
        err.update(model)
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x[:, None])[:, 0], y)
        loss.backward()
        opt.step()
    amp_runs.append(amp.result())
    err_runs.append(err.result())
    print(f"seed {seed}: final mse {float(amp_runs[-1].mse[-1]):.3f}")

# %%
# The heatmap
# -----------
# Rows are the frequencies, columns the training steps, and the color the normalized
# amplitude (mean over seeds). The low frequencies light up first; the high ones are still
# far from learned at the end of this short run.
ax = clplot.spectral_bias_heatmap(amp_runs)
ax.set_title("normalized amplitude |h(k)| / A_k")
ax.figure.tight_layout()

# %%
# Relative error per frequency
# ----------------------------
# The same story with Xu et al.'s metric, one curve per frequency (with ``CURVLAB_FULL=1``, a
# band of one standard deviation over the seeds): the error falls first at ``k = 5``, last at
# ``k = 50``.
ax = clplot.frequency_curves(err_runs)
ax.set_ylim(0, 1.5)
ax.set_title("relative error |h(k) - y(k)| / |y(k)|")
ax.figure.tight_layout()

# %%
# What the network has fitted
# ---------------------------
# At the end of the run, the prediction has the slow envelope of the target (its low
# frequencies) and misses most of the fast oscillations.
fig, ax = plt.subplots(figsize=(8, 3))
with torch.no_grad():
    pred = model(x[:, None])[:, 0]
ax.plot(x, y, label="target", lw=1)
ax.plot(x, pred, label="network", lw=1.5)
ax.set_xlabel("x")
ax.legend()
fig.tight_layout()
plt.show()
