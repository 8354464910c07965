r"""
Sharpness during training: the edge of stability
================================================

Gradient descent with step size :math:`\eta` on a quadratic diverges along any direction whose
curvature exceeds :math:`2 / \eta`. Cohen et al. (2021, *Gradient descent on neural networks
typically occurs at the edge of stability*) observed what full-batch gradient descent does on
a network: the top Hessian eigenvalue (the *sharpness*) first rises ("progressive
sharpening") until it reaches :math:`2 / \eta`, then stops rising and hovers around that value
while the loss keeps decreasing, non-monotonically.

This example follows the sharpness of a small tanh MLP during full-batch gradient descent
(``torch.optim.SGD`` on the whole batch) at two learning rates with
:class:`curvlab.track.CurvatureTracker`, which computes the top eigenvalue with
:func:`curvlab.eigsh` every few steps, each solve warm-started from the previous eigenvector.

**Quick and full runs.** By default: the 1,437 training digits of scikit-learn (embedded,
8x8), 1,000 steps, a record every 5 steps; about 30 seconds on two CPU cores.
``CURVLAB_FULL=1``: 3,000 steps, a record every 2 steps (a few minutes).
"""

# %%
# Setup
# -----
# The MSE loss on one-hot targets (the setting of most of Cohen et al.'s figures) and a
# 64-64-64-10 tanh MLP (9,034 parameters), float32, the same initialization for both runs.
import time

import matplotlib.pyplot as plt
import torch
from torch import nn

import curvlab as cl
from curvlab.track import CurvatureTracker, track_training

N, STEPS, EVERY = None, 1000, 5  # all training digits, 1,000 steps, a record every 5
# sphinx_gallery_start_ignore
import os

if os.environ.get("CURVLAB_FULL") == "1":  # the published run
    N, STEPS, EVERY = None, 3000, 2
if os.environ.get("CURVLAB_SMOKE") == "1":  # a few seconds, for a quick check
    N, STEPS, EVERY = 128, 40, 10
# sphinx_gallery_end_ignore
LRS = (0.5, 0.8)

X, y = cl.problems.digits(split="train").tensors
X, y = X.flatten(1)[:N], y[:N]
Y = nn.functional.one_hot(y, 10).float()
loss_fn = nn.MSELoss()
print(f"{X.shape[0]} digits, {STEPS} steps of full-batch gradient descent")


def make_model():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 10)
    )


# %%
# Train and track
# ---------------
# :func:`curvlab.track.track_training` is the plain training loop: at every step it calls
# ``tracker.update(step)`` (which records when the step is a multiple of ``every``, step 0
# being the initialization) and then takes one optimizer step. The curvature is measured on
# the training batch itself, so the sharpness is that of the loss being minimized.
runs = {}
for lr in LRS:
    model = make_model()
    tracker = CurvatureTracker(model, loss_fn, (X, Y), every=EVERY, k=1, seed=0)
    t0 = time.perf_counter()
    losses = track_training(
        tracker, torch.optim.SGD(model.parameters(), lr=lr), [(X, Y)], epochs=STEPS
    )
    runs[lr] = (tracker, losses)
    h = tracker.history
    print(
        f"lr={lr}: 2/lr = {2 / lr:.2f}, sharpness {h[0].top:.2f} -> max "
        f"{max(r.top for r in h):.2f} -> {h[-1].top:.2f} at step {h[-1].step}"
    )
    print(
        f"  loss {losses[0]:.4f} -> {losses[-1]:.4f}; {len(h)} records, "
        f"{sum(r.num_matvecs for r in h)} products, all converged: "
        f"{all(r.converged for r in h)}, {time.perf_counter() - t0:.1f} s"
    )

# %%
# The picture
# -----------
# :func:`curvlab.plot.curvature_history` draws the tracked eigenvalue against the step and,
# with ``lr=``, the :math:`2 / \eta` line in the same color.
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
for lr, (tracker, losses) in runs.items():
    cl.plot.curvature_history(tracker.history, lr=lr, ax=ax1, label=f"lr={lr}")
    ax2.plot(losses, label=f"lr={lr}")
ax1.set_title("top Hessian eigenvalue (sharpness)")
ax2.set_yscale("log")
ax2.set_xlabel("step")
ax2.set_ylabel("training loss")
ax2.set_title("training loss")
ax2.legend(fontsize="small")
fig.tight_layout()

# %%
# What it shows, and what it does not
# -----------------------------------
# In both runs the sharpness, after a short dip, rises from its value at initialization
# (about 2.3, below both thresholds) until it reaches :math:`2 / \eta`, overshoots it for a
# while (the loss spikes when it turns back), and from there stays near the line, slightly
# above it, while the loss keeps going down, non-monotonically. The larger learning rate stops
# sharpening earlier and at a lower sharpness. This is one small network, one seed, one data
# set and full-batch gradient descent; with mini-batch SGD the sharpness is reported to settle
# below :math:`2 / \eta`, depending on the batch size (Cohen et al.; not shown here). A
# learning rate whose :math:`2 / \eta` is below the initial sharpness (``lr=1.0`` here) makes
# the first steps push the sharpness down to the line instead.
#
# What a record costs
# -------------------
# Each record builds the Hessian operator at the current parameters and runs ``eigsh`` to a
# relative residual of ``1e-4`` (the tracker's default), starting from the previous record's
# eigenvector. That start saves products but does not make a refresh free: the eigenvector
# turns between records and Lanczos still has to shrink the error by orders of magnitude.
for lr, (tracker, _) in runs.items():
    warm = [r.eig_matvecs for r in tracker.history if r.warm]
    print(
        f"lr={lr}: cold first solve {tracker.history[0].eig_matvecs} products, warm "
        f"refreshes {min(warm)} to {max(warm)} (mean {sum(warm) / len(warm):.1f})"
    )
