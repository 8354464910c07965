r"""
A3. LeNet-5: a Newton step on the last layer
============================================

The third problem of study A is a LeNet-5 with BatchNorm and ReLU on 3-channel 32x32 images
(CIFAR-10 in the study). The last layer, 84 -> 10 (850 parameters), is trained with the
gradient-regularized Newton step of Mishchenko (2023),

.. math::

    \theta \leftarrow \theta - (H + \lambda I)^{-1} g, \qquad \lambda = \sqrt{L \lVert g \rVert},
    \quad L = 0.1,

with the :math:`850 \times 850` Hessian block formed densely and solved by
``torch.linalg.solve`` (:class:`curvlab.optim.DampedNewton` with ``solver="dense"``); the rest
of the network is on Adam (lr :math:`10^{-3}`). The baseline is Adam on everything. The study
ran both at batch sizes 64, 128, 256 and full batch, 20 epochs each.

By default this script uses scikit-learn's digits as a stand-in for CIFAR-10 (1,437 training
and 360 test images, 8x8 grey levels resized to 32x32 and repeated over three channels), at
batch sizes 64, 256 and full batch (1,437), for 6 epochs: about a minute on two CPU cores.
With ``CURVLAB_FULL=1`` and ``CURVLAB_DATA`` pointing at a folder holding torchvision's
``cifar-10-batches-py``, it runs the published setting (CIFAR-10, batch sizes 64, 128, 256 and
50,000, 20 epochs; the full batch needs several GB of memory). It never downloads.
"""

# %%
# Problem and optimizers
# ----------------------
# :func:`curvlab.problems.image_classification` builds the network (``"lenet5-bn"``, seeded
# initialization), the cross-entropy loss and the loaders; the last layer is ``model.fc3``.
# :func:`curvlab.optim.compose` steps Adam on the body and DampedNewton on ``fc3`` with one
# closure: one forward pass, one gradient (with the double-backward graph for the Hessian
# block of ``fc3``), then both updates. BatchNorm is in training mode during the steps, so the
# Hessian is that of the batch loss the step sees, batch statistics included.
import copy
import os

import matplotlib.pyplot as plt
import numpy as np
import torch

from curvlab.optim import DampedNewton, compose
from curvlab.optim import step as optim_step
from curvlab.problems import image_classification

FULL = os.environ.get("CURVLAB_FULL", "0") == "1"
SMOKE = os.environ.get("CURVLAB_SMOKE", "0") == "1"  # a few steps, for the test suite
if FULL:
    DATA, EPOCHS, BATCHES, N_TRAIN = "cifar10", 20, [64, 128, 256, 50_000], None
elif SMOKE:
    DATA, EPOCHS, BATCHES, N_TRAIN = "digits", 1, [128], 256
else:
    DATA, EPOCHS, BATCHES, N_TRAIN = "digits", 6, [64, 256, 1437], None

# One intra-op thread: the printed numbers then do not depend on the machine's core count (the
# order of floating-point reductions does, and in float32 that can decide, for example, in
# which epoch an unstable run diverges), and the script does not slow down when other processes
# share the CPU. The setting is restored at the end of the script.
THREADS = torch.get_num_threads()
torch.set_num_threads(1)


def build(method, batch_size):
    problem = image_classification(
        "lenet5-bn", data=DATA, batch_size=batch_size, n_train=N_TRAIN, seed=0
    )
    model = problem.model
    if method == "Adam":
        return problem, torch.optim.Adam(model.parameters(), lr=1e-3), None
    body = [p for name, p in model.named_parameters() if not name.startswith("fc3.")]
    newton = DampedNewton(model.fc3.parameters(), variant="gradreg", L=0.1, solver="dense")
    return problem, compose(torch.optim.Adam(body, lr=1e-3), newton), newton


# %%
# Training
# --------
# Test accuracy after every epoch (the model in eval mode: BatchNorm uses its running
# statistics), and the mean training loss over the epoch's batches. At the end we also measure
# the test accuracy with BatchNorm normalizing by the statistics of the test batch itself (the
# whole test set, 360 digits, is one batch), which tells apart a bad network from stale running
# statistics.


def accuracy(model, loader, *, batch_stats=False):
    """Test accuracy; BatchNorm with its running statistics, or (``batch_stats``) with the
    statistics of each test batch (on a copy, so the model's running statistics stay as
    they are)."""
    net = copy.deepcopy(model).train() if batch_stats else model.eval()
    correct = total = 0
    with torch.no_grad():
        for X, y in loader:
            correct += int((net(X).argmax(1) == y).sum())
            total += len(y)
    model.train()
    return correct / total


def train(method, batch_size):
    problem, opt, newton = build(method, batch_size)
    model, loss_fn = problem.model, problem.loss_fn
    model.train()
    acc, losses = [accuracy(model, problem.test_loader)], []
    for _ in range(EPOCHS):
        batch_losses = []
        for X, y in problem.train_loader:

            def closure(X=X, y=y):
                return loss_fn(model(X), y)

            loss = optim_step(opt, closure)  # torch optimizers and curvlab's, one call
            batch_losses.append(float(loss.detach()))
        losses.append(np.mean(batch_losses))
        acc.append(accuracy(model, problem.test_loader))
    return {
        "acc": np.array(acc),
        "loss": np.array(losses),
        "acc_batch_stats": accuracy(model, problem.test_loader, batch_stats=True),
        "n": len(problem.train_loader.dataset),
    }


METHODS = ["Adam", "Adam + gradreg (last layer)"]
results = {(m, bs): train(m, bs) for bs in BATCHES for m in METHODS}

# %%
# Results
# -------
n_train = next(iter(results.values()))["n"]
print(f"{DATA}: {n_train} training images, {EPOCHS} epochs")
print(
    f"{'batch':>6s} {'method':28s} {'final test acc':>15s} {'best':>6s} "
    f"{'test acc, BN on test batch':>27s} {'train loss':>11s}"
)
for (m, bs), r in results.items():
    print(
        f"{bs:6d} {m:28s} {r['acc'][-1]:15.3f} {r['acc'].max():6.3f} "
        f"{r['acc_batch_stats']:27.3f} {r['loss'][-1]:11.4f}"
    )

fig, axes = plt.subplots(1, len(BATCHES), figsize=(4 * len(BATCHES), 3.8), sharey=True)
for ax, bs in zip(np.atleast_1d(axes), BATCHES):
    for m in METHODS:
        acc = results[m, bs]["acc"]
        ax.plot(np.arange(len(acc)), acc, marker=".", label=m)
    ax.set_title(f"batch {bs}" + (" (full)" if bs >= n_train else ""))
    ax.set_xlabel("epoch")
    ax.set_ylim(0, 1)
np.atleast_1d(axes)[0].set_ylabel("test accuracy")
np.atleast_1d(axes)[0].legend(fontsize="small", loc="lower right")
fig.tight_layout()

torch.set_num_threads(THREADS)

# %%
# What the figure shows
# ---------------------
# With mini-batches (64 and 256) both methods reach 97-99% test accuracy on the digits within
# a few epochs, and the curves are hard to tell apart. The Newton step does change the
# training loss: it fits the last layer to every batch, and the epoch's mean training loss ends
# several times (at batch 256, almost a hundred times) lower than with Adam alone, without a
# gain in test accuracy.
#
# At full batch an epoch is one step, six in all. The Newton step makes each of them count
# (training loss 0.13 against Adam's 1.15), yet its test accuracy, with BatchNorm in eval mode,
# is far *below* Adam's. The last column of the table shows why: normalized by the statistics
# of the test batch itself, the same network classifies about 96% of the test digits (Adam's
# 89%). BatchNorm's running statistics (momentum 0.1) have seen six batches and are still about
# half their initial values, so the eval-mode network is not the network that was trained, and
# a last layer fitted precisely to the batch-normalized features suffers more from the
# mismatch than Adam's. Reading a curve of eval-mode accuracy after few steps as "the method
# does not work" would be wrong here.
#
# **Against the original.** The study trained on CIFAR-10 for 20 epochs and reported, at batch
# 64, test accuracy 0.670 for Adam (0.641 for SGD, 0.670 for Adam with L-BFGS on the last
# layer) and, for Adam + gradreg, an accuracy oscillating between 0.18 and 0.53. On the
# digits our gradreg run does not oscillate (0.983 against Adam's 0.989 at batch 64), but the
# digits are a much easier problem (a linear classifier gets about 96%), so this default run
# cannot confirm or refute the CIFAR numbers: ``CURVLAB_FULL=1`` with ``CURVLAB_DATA`` runs
# the published setting. The full-batch result above suggests one thing to check there: whether
# the oscillation is in the network or in BatchNorm's running statistics, which the last column
# of the table answers. The SGD and L-BFGS runs of the study are left out of this page (they
# are ordinary ``torch.optim`` runs; L-BFGS on the last layer works as a member of
# :func:`curvlab.optim.compose`).
