r"""
E1. Spectral bias on a sum of sinusoids: SGD, Adam, AdaHessian, SCRN
=====================================================================

Study E asks whether second-order optimizers change the *spectral bias* of neural networks,
their tendency to fit the low frequencies of a target before the high ones. The synthetic task
is a sum of four sinusoids on :math:`N = 200` points of :math:`[0, 1)`,

.. math::

   f(x) = \sum_{k} a_k \sin(2 \pi f_k x), \qquad a = (0.25, 0.5, 0.75, 1), \quad
   f = (1, 2, 4, 8),

fitted by a ReLU MLP 1-256-256-256-256-1 with the mean squared error and batches of 20
(:func:`curvlab.problems.sinusoids`). The optimizers and their published budgets:

============  ===================================================  ============
SGD           lr 5e-3                                              15,000 epochs
Adam          lr 1e-4                                              10,000 epochs
AdaHessian    lr 1e-2 (:class:`curvlab.optim.AdaHessian`)           10,000 epochs
SCRN          :math:`\rho = 5`, :math:`l = 0.1`                     10,000 epochs
              (:class:`curvlab.optim.SCRN`, 10 inner steps)
============  ===================================================  ============

each over 10 seeds. The metric, every 10 epochs, is the normalized Fourier coefficient of the
network's output at each target frequency,

.. math::

   \frac{|\hat h(f_k)|}{(N/2)\, a_k},

which is 1 when the component has been learned with the right amplitude
(:class:`curvlab.fourier.SpectralBiasTracker` with ``metric="amplitude"``, built on
:func:`curvlab.fourier.dft_amplitudes`). The study plots its mean and spread over seeds against
epochs, and the coefficients at the first epoch where the training loss reaches 0.2: a
snapshot of *how* each optimizer got to the same fit quality.

SCRN follows Tripuraneni et al. (2018): the Cauchy step when :math:`\lVert g\rVert \ge l^2 /
\rho` (always, here: :math:`l^2/\rho = 0.002`), the perturbed gradient-descent subsolver
otherwise, with the perturbation uniform on the sphere and the paper's inner step size; the
original ignored its step size and drew the perturbation from :math:`[0, 1)^d`.

**Quick and full runs.** The published budgets take days on a CPU. The default run keeps every
setting but trains each optimizer for 100 epochs (1,000 steps) over 2 seeds, records every 5
epochs, and, since no run gets near a loss of 0.2 that early, takes the snapshot at the first
record where the loss is at most 0.75 (the mean square of the target is 0.94). About a minute on
two CPU cores. ``CURVLAB_FULL=1`` runs the published protocol (10 seeds, 10,000 and 15,000
epochs, threshold 0.2).
"""

# %%
# Setup
# -----
import os
import time

import matplotlib.pyplot as plt
import numpy as np
import torch

import curvlab.plot as clplot
from curvlab.fourier import SpectralBiasTracker
from curvlab.optim import SCRN, AdaHessian
from curvlab.optim import step as optim_step
from curvlab.problems import sinusoids

FULL = os.environ.get("CURVLAB_FULL", "0") == "1"
SMOKE = os.environ.get("CURVLAB_SMOKE", "0") == "1"  # a few seconds, for the test suite
if FULL:
    SEEDS, EVERY, THRESHOLD = list(range(10)), 10, 0.2
    EPOCHS = {"SGD": 15_000, "Adam": 10_000, "AdaHessian": 10_000, "SCRN": 10_000}
elif SMOKE:
    SEEDS, EVERY, THRESHOLD = [0, 1], 1, 0.75
    EPOCHS = dict.fromkeys(("SGD", "Adam", "AdaHessian", "SCRN"), 2)
else:
    SEEDS, EVERY, THRESHOLD = [0, 1], 5, 0.75
    EPOCHS = dict.fromkeys(("SGD", "Adam", "AdaHessian", "SCRN"), 100)

OPTIMIZERS = {
    "SGD": lambda ps, seed: torch.optim.SGD(ps, lr=5e-3),
    "Adam": lambda ps, seed: torch.optim.Adam(ps, lr=1e-4),
    "AdaHessian": lambda ps, seed: AdaHessian(ps, lr=1e-2, seed=seed),
    "SCRN": lambda ps, seed: SCRN(ps, rho=5.0, l=0.1, seed=seed),
}


def step(opt, model, loss_fn, X, y):
    """One step under either contract (curvlab's closure or torch's backward-then-step):
    :func:`curvlab.optim.step` dispatches."""
    optim_step(opt, lambda: loss_fn(model(X), y))


# %%
# The target and its spectrum
# ---------------------------
# On the uniform grid the normalized DFT gives the amplitudes back exactly, so a network that
# has learned the target scores 1 at every frequency.
problem = sinusoids(preset="study_e", seed=0)
print("amplitudes", problem.amplitudes.tolist(), "at frequencies", problem.frequencies.tolist())

fig, ax = plt.subplots(figsize=(7, 2.8))
ax.plot(problem.x[:, 0], problem.y[:, 0])
ax.set_xlabel("x")
ax.set_ylabel("f(x)")
ax.set_title("target: 0.25 sin(2 pi x) + 0.5 sin(4 pi x) + 0.75 sin(8 pi x) + sin(16 pi x)")
fig.tight_layout()

# %%
# Training with a tracker
# -----------------------
# Each run rebuilds the problem from its seed (the seed fixes the initialization and the order
# of the batches, the same for the four optimizers), and the tracker evaluates the network on
# the 200 grid points at epoch 0 (the initialization) and every ``EVERY`` epochs after.
results = {name: [] for name in OPTIMIZERS}
for name, make_opt in OPTIMIZERS.items():
    t0 = time.perf_counter()
    for seed in SEEDS:
        model, loss_fn, train_loader, _ = problem = sinusoids(preset="study_e", seed=seed)
        opt = make_opt(list(model.parameters()), seed)
        tracker = SpectralBiasTracker(problem.x, problem.y, problem.frequencies,
                                      amplitudes=problem.amplitudes, every=EVERY)
        for epoch in range(EPOCHS[name] + 1):
            tracker.update(model, step=epoch)
            if epoch == EPOCHS[name]:
                break
            for X, y in train_loader:
                step(opt, model, loss_fn, X, y)
        results[name].append(tracker.result())
    print(f"{name:10s} {len(SEEDS)} seeds x {EPOCHS[name]} epochs "
          f"({time.perf_counter() - t0:.1f} s)")

# %%
# Normalized coefficients against epochs
# --------------------------------------
# One panel per optimizer: the mean over seeds of each frequency's normalized coefficient,
# with the band between the lowest and highest seed (mean +- one standard deviation in the
# full run). The dashed line is 1, a learned component.
band = "std" if len(SEEDS) > 2 else "minmax"
fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharey=True)
for ax, (name, runs) in zip(axes.flat, results.items()):
    clplot.frequency_curves(runs, band=band, ax=ax, legend=name == "SGD")
    ax.axhline(1.0, color="k", ls="--", lw=0.8)
    ax.set_xlabel("epoch")
    ax.set_title(name)
fig.tight_layout()

# %%
# The training loss (the mean squared error on the grid, recorded with the coefficients):
fig, ax = plt.subplots(figsize=(7, 3.4))
for name, runs in results.items():  # one call each: SGD runs longer in the full protocol
    clplot.training_curves({name: [r.mse for r in runs]}, steps=runs[0].steps, band="minmax",
                           logy=True, ax=ax, xlabel="epoch", ylabel="mean squared error")
ax.axhline(THRESHOLD, color="k", ls=":", lw=0.8)
fig.tight_layout()

# %%
# The coefficients when the loss first reaches the threshold
# ----------------------------------------------------------
# :meth:`~curvlab.fourier.SpectralBiasResult.first_below` returns the first record whose loss
# is at most ``THRESHOLD`` and the coefficients there; runs that never get there are left out
# (and counted).
snap = {}
for name, runs in results.items():
    hits = []
    for r in runs:
        try:
            hits.append(r.first_below(THRESHOLD))
        except ValueError:
            pass
    snap[name] = hits

fig, ax = plt.subplots(figsize=(8, 3.6))
freqs = problem.frequencies.tolist()
width = 0.8 / len(snap)
for i, (name, hits) in enumerate(snap.items()):
    if not hits:
        continue
    vals = np.stack([v.numpy() for _, v in hits])
    ax.bar(np.arange(len(freqs)) + (i - 1.5) * width, vals.mean(0), width,
           yerr=vals.std(0) if len(hits) > 1 else None, capsize=2,
           label=f"{name} ({len(hits)}/{len(SEEDS)} runs)")
ax.axhline(1.0, color="k", ls="--", lw=0.8)
ax.set_xticks(range(len(freqs)))
ax.set_xticklabels([f"f = {f:g}" for f in freqs])
ax.set_ylabel("normalized coefficient")
ax.set_title(f"at the first record with loss <= {THRESHOLD}")
ax.legend(fontsize="small")
fig.tight_layout()

# %%
# Results
# -------
# Per optimizer: the mean epoch at which the loss first reached the threshold and the mean
# coefficients there, then the final loss and coefficients (means over seeds).
header = (f"{'optimizer':11s} {'epoch':>6s} " + " ".join(f"{'f=' + format(f, 'g'):>6s}"
                                                      for f in freqs)
          + f" | {'final mse':>9s} " + " ".join(f"{'f=' + format(f, 'g'):>6s}" for f in freqs))
print(f"threshold {THRESHOLD}")
print(header)
print("-" * len(header))
for name, runs in results.items():
    hits = snap[name]
    if hits:
        at = (f"{np.mean([s for s, _ in hits]):6.0f} "
              + " ".join(f"{x:6.2f}" for x in np.mean([v.numpy() for _, v in hits], axis=0)))
    else:
        at = f"{'never':>6s} " + " ".join(f"{'-':>6s}" for _ in freqs)
    final = np.mean([r.values[-1].numpy() for r in runs], axis=0)
    mse = np.mean([float(r.mse[-1]) for r in runs])
    print(f"{name:11s} {at} | {mse:9.4f} " + " ".join(f"{x:6.2f}" for x in final))

# %%
# Comparison with the original
# ----------------------------
# The original reports the curves and the snapshot as figures. Its conclusion is that the
# second-order methods learn the high frequencies faster and more stably than SGD and Adam.
#
# * **Spectral bias.** All four optimizers learn the frequencies in increasing order: after 100
#   epochs the normalized coefficient is largest at :math:`f = 1` (which every optimizer first
#   *overshoots*, to about twice its amplitude, and which Adam and AdaHessian then bring back
#   towards 1) and smallest at :math:`f = 8` (0.06-0.11). That is the spectral bias the study set
#   out to measure, visible here within a minute instead of days.
# * **Second-order methods.** At epoch 100 AdaHessian has the largest coefficient at :math:`f = 4`
#   (about 0.34, against 0.27 for Adam and SCRN and 0.16 for SGD), and AdaHessian and SCRN the
#   largest at :math:`f = 8` (0.10-0.11, against 0.09 and 0.06): in the direction of the study's
#   claim, with Adam close behind. But SCRN's coefficient at :math:`f = 1` jumps between about 1 and
#   2.5 from one record to the next: with :math:`\rho = 5` every step is a Cauchy step along the
#   mini-batch gradient, large and noisy. "More stable" does not hold for SCRN in this first phase.
# * **At equal loss.** The snapshot at the threshold is the same for all four optimizers: each
#   reached a loss of 0.75 by fitting :math:`f = 1` (overshooting it) and half of :math:`f = 2`. SGD
#   gets there last (epoch 60, against 8-12 for the others). The study's snapshot at 0.2, after
#   thousands of epochs, is taken where most of :math:`f = 8` has been learned, which is where the
#   optimizers can differ; ``CURVLAB_FULL=1`` reaches it.
