r"""
A3. LeNet-5: a second-order step on the last layer
==================================================

.. admonition:: Study A, problem 3, at a glance

    **The original** (VladZetta/alternating_layers) trained a LeNet-5 with BatchNorm on
    CIFAR-10 for 20 epochs (seed 42) at batch sizes 64, 128, 256 and 50,000 (full batch) with
    Adam, SGD, and Adam on the body with a second-order method on the last 84 -> 10 layer:
    L-BFGS or the gradient-regularized Newton step. **This page** runs all four methods on 3
    seeds and shows both training-loss metrics (the original's, the mean of the pre-step
    batch losses in training mode, and the loss on the whole training set in eval mode), and
    quotes the original's final test accuracies at every batch size. **Not covered by
    default:** CIFAR-10 (it is not embedded: a 512-image subset of scikit-learn's digits
    stands in, at batch 128 and full batch, 4 epochs); the original's Adam+gradreg curves,
    which its repository does not contain (only its report's description is quoted).
    **Data:** ``CURVLAB_FULL=1`` with
    ``CURVLAB_DATA`` pointing at a folder holding torchvision's ``cifar-10-batches-py`` runs
    the published setting (batch sizes 64, 128, 256 and 50,000, 20 epochs; the full batch
    needs several GB of memory); ``CURVLAB_ORIGINAL=1`` does so with the original's single
    seed 42. Nothing is downloaded.

The last layer, 84 -> 10 (850 parameters), is trained with

* **gradreg** (Mishchenko, 2023): :math:`\theta \leftarrow \theta - (H + \lambda I)^{-1} g`,
  :math:`\lambda = \sqrt{L \lVert g \rVert}`, :math:`L = 0.1`, the :math:`850 \times 850`
  Hessian block formed densely and solved by ``torch.linalg.solve``
  (:class:`curvlab.optim.DampedNewton` with ``solver="dense"``);
* **L-BFGS**: ``torch.optim.LBFGS(lr=0.01)`` with torch's defaults (20 iterations per step,
  history 100, no line search), as the original;

the rest of the network on Adam (lr :math:`10^{-3}`). The baselines are Adam (lr
:math:`10^{-3}`) and SGD (lr 0.01, momentum 0.9) on every parameter. The original's
configurations: ``configs/lenet5/full_batch/*.yaml`` of
``VladZetta/alternating_layers@b866165a3423c422aa6d612da0077ebc93093cb4``, run at each batch
size by its ``scripts/run_batches.sh``.
"""

# sphinx_gallery_start_ignore
import os

import torch

FULL = os.environ.get("CURVLAB_FULL", "0") == "1"
SMOKE = os.environ.get("CURVLAB_SMOKE", "0") == "1"  # a few steps, for the test suite
ORIGINAL = os.environ.get("CURVLAB_ORIGINAL", "0") == "1"
if FULL or ORIGINAL:
    DATA, EPOCHS, BATCHES, N_TRAIN = "cifar10", 20, [64, 128, 256, 50_000], None
    SEEDS = [42] if ORIGINAL else [42, 0, 1]
elif SMOKE:
    DATA, EPOCHS, BATCHES, N_TRAIN, SEEDS = "digits", 1, [128], 256, [0]
else:
    DATA, EPOCHS, BATCHES, N_TRAIN, SEEDS = "digits", 4, [128, 512], 512, [0, 1, 2]
# One intra-op thread: the printed numbers then do not depend on the core count, and the
# script does not slow down when other processes share the CPU. Restored at the end.
THREADS = torch.get_num_threads()
torch.set_num_threads(1)
# sphinx_gallery_end_ignore

# %%
# The original's results
# ----------------------
# Final test accuracy after 20 epochs on CIFAR-10, seed 42 (source:
# ``VladZetta/alternating_layers@b866165a3423c422aa6d612da0077ebc93093cb4:``
# ``results/cifar10/{adam,sgd,adam_lbfgs}/*.pickle``, as extracted in
# ``originals/A/lenet5_cifar10.json``). The repository holds no Adam+gradreg result; the
# study's report describes its test accuracy at batch 64 as oscillating between 0.18 and
# 0.53.
import copy
import functools

import matplotlib.pyplot as plt
import numpy as np

from curvlab.optim import DampedNewton
from curvlab.optim import step as optim_step
from curvlab.problems import image_classification

ORIGINAL_ACC = {  # batch size: (Adam lr 1e-3, SGD lr 0.01, Adam + L-BFGS)
    64: (0.6704, 0.6406, 0.6704),
    128: (0.6581, 0.6584, 0.6676),
    256: (0.6691, 0.6674, 0.6694),
    50_000: (0.2996, 0.1839, 0.3567),
}
print("Original, CIFAR-10, 20 epochs, final test accuracy")
print(f"{'batch':>6s} {'Adam':>7s} {'SGD':>7s} {'Adam + L-BFGS':>14s}")
for bs, accs in ORIGINAL_ACC.items():
    print(f"{bs:6d} {accs[0]:7.4f} {accs[1]:7.4f} {accs[2]:14.4f}")

# %%
# Training
# --------
# :func:`curvlab.problems.image_classification` builds the network (``"lenet5-bn"``, seeded
# initialization), the cross-entropy loss and the loaders; the last layer is ``model.fc3``.
# A mixed step alternates as the original did: the second-order step on ``fc3`` (L-BFGS calls
# the closure up to 20 times; DampedNewton forms the Hessian block of the batch loss, batch
# statistics included), then the Adam step on the body with a fresh forward pass.
#
# Two training-loss metrics: the original's (the mean over the epoch of each batch's loss
# before its step, in training mode) and the loss on the whole training set after the epoch
# in eval mode (BatchNorm on its running statistics). The test accuracy is measured in eval
# mode, and at the end also with BatchNorm normalizing by the statistics of the test set
# itself, which tells apart a bad network from stale running statistics.
METHODS = ["Adam", "SGD", "Adam + L-BFGS (last)", "Adam + gradreg (last)"]


@functools.cache
def seeded_problem(batch_size, seed):
    return image_classification(
        "lenet5-bn", data=DATA, batch_size=batch_size, n_train=N_TRAIN, seed=seed
    )


def build(method, batch_size, seed):
    """A copy of the seeded network and a loader with its own seeded shuffle: every method
    starts from the same weights and sees the same batch order, without rebuilding the data."""
    problem = seeded_problem(batch_size, seed)
    model = copy.deepcopy(problem.model)
    loader = torch.utils.data.DataLoader(
        problem.train_loader.dataset,
        batch_size=batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )
    problem = (model, problem.loss_fn, loader, problem.test_loader)
    if method == "Adam":
        return problem, torch.optim.Adam(model.parameters(), lr=1e-3), None
    if method == "SGD":
        return problem, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9), None
    body = [p for name, p in model.named_parameters() if not name.startswith("fc3.")]
    if method == "Adam + L-BFGS (last)":
        last = torch.optim.LBFGS(model.fc3.parameters(), lr=0.01)
    else:
        last = DampedNewton(model.fc3.parameters(), variant="gradreg", L=0.1, solver="dense")
    return problem, torch.optim.Adam(body, lr=1e-3), last


def evaluate(model, loader, *, batch_stats=False):
    """Mean loss and accuracy; BatchNorm on its running statistics, or (``batch_stats``) on
    those of each batch (on a copy, so the model's running statistics stay as they are)."""
    net = copy.deepcopy(model).train() if batch_stats else model.eval()
    loss = correct = total = 0.0
    with torch.no_grad():
        for X, y in loader:
            out = net(X)
            loss += float(torch.nn.functional.cross_entropy(out, y, reduction="sum"))
            correct += int((out.argmax(1) == y).sum())
            total += len(y)
    model.train()
    return loss / total, correct / total


def train(method, batch_size, seed):
    (model, loss_fn, train_loader, test_loader), first, last = build(method, batch_size, seed)
    # the whole training set in order, in batches of 1,000, for the eval-mode loss
    full_loader = torch.utils.data.DataLoader(train_loader.dataset, batch_size=1000)
    acc, batch_loss, full_loss = [evaluate(model, test_loader)[1]], [], []
    for _ in range(EPOCHS):
        losses = []
        for X, y in train_loader:

            def closure(X=X, y=y):
                return loss_fn(model(X), y)

            if last is not None:
                losses.append(float(optim_step(last, closure)))  # fc3 first
                optim_step(first, closure)  # then the body, with a fresh forward
            else:
                losses.append(float(optim_step(first, closure)))
        batch_loss.append(np.mean(losses))
        full_loss.append(evaluate(model, full_loader)[0])
        acc.append(evaluate(model, test_loader)[1])
    return dict(
        acc=np.array(acc),
        batch_loss=np.array(batch_loss),
        full_loss=np.array(full_loss),
        acc_batch_stats=evaluate(model, test_loader, batch_stats=True)[1],
        n=len(train_loader.dataset),
    )


results = {(m, bs): [train(m, bs, seed) for seed in SEEDS] for bs in BATCHES for m in METHODS}

# %%
# Results
# -------
# Mean over the seeds (``sd``: their standard deviation) after the last epoch. ``BN test``:
# the test accuracy with BatchNorm on the test set's own statistics. ``batch loss``: the
# original's training loss; ``full loss``: the whole training set in eval mode.
n_train = next(iter(results.values()))[0]["n"]
print(f"{DATA}: {n_train} training images, {EPOCHS} epochs, {len(SEEDS)} seeds {SEEDS}")
print(
    f"{'batch':>6s} {'method':21s} {'test acc':>8s} {'sd':>6s} {'BN test':>7s} "
    f"{'batch loss':>10s} {'full loss':>10s}"
)
summary = {}
for (m, bs), runs in results.items():
    acc = np.array([r["acc"][-1] for r in runs])
    row = dict(
        acc=acc.mean(),
        sd=acc.std(),
        bn=np.mean([r["acc_batch_stats"] for r in runs]),
        batch=np.mean([r["batch_loss"][-1] for r in runs]),
        full=np.mean([r["full_loss"][-1] for r in runs]),
    )
    summary[m, bs] = row
    print(
        f"{bs:6d} {m:21s} {row['acc']:8.3f} {row['sd']:6.3f} {row['bn']:7.3f} "
        f"{row['batch']:10.4f} {row['full']:10.4f}"
    )

fig, axes = plt.subplots(1, len(BATCHES), figsize=(4.2 * len(BATCHES) + 2, 3.8), sharey=True)
for ax, bs in zip(np.atleast_1d(axes), BATCHES):
    for m in METHODS:
        acc = np.stack([r["acc"] for r in results[m, bs]])
        x = np.arange(acc.shape[1])
        (line,) = ax.plot(x, acc.mean(0), marker=".", label=m)
        ax.fill_between(x, acc.min(0), acc.max(0), color=line.get_color(), alpha=0.2)
    ax.set_title(f"batch {bs}" + (" (full)" if bs >= n_train else ""))
    ax.set_xlabel("epoch")
    ax.set_ylim(0, 1)
np.atleast_1d(axes)[0].set_ylabel("test accuracy (mean, band: min-max)")
np.atleast_1d(axes)[-1].legend(fontsize="small", loc="center left", bbox_to_anchor=(1.0, 0.5))
fig.tight_layout()

# %%
# Findings
# --------
# Formatted from the results; the assertions make a stale claim fail the build.
small = min(BATCHES)
gradreg, lbfgs = summary["Adam + gradreg (last)", small], summary["Adam + L-BFGS (last)", small]
adam = summary["Adam", small]
lines = [
    f"At batch {small}: test accuracy Adam {adam['acc']:.3f}, SGD "
    f"{summary['SGD', small]['acc']:.3f}, Adam + L-BFGS {lbfgs['acc']:.3f},",
    f"Adam + gradreg {gradreg['acc']:.3f}. Training loss, original's metric: Adam "
    f"{adam['batch']:.4f},",
    f"gradreg {gradreg['batch']:.4f}; whole training set in eval mode: Adam "
    f"{adam['full']:.4f}, gradreg {gradreg['full']:.4f}.",
]
if not SMOKE and DATA == "digits":
    # the gradreg last layer fits the batches more closely than Adam alone
    assert gradreg["batch"] < adam["batch"], (gradreg, adam)
    big = max(BATCHES)
    g_big, a_big = summary["Adam + gradreg (last)", big], summary["Adam", big]
    # at full batch, BatchNorm's running statistics lag: the test set's statistics help
    assert g_big["bn"] > g_big["acc"], g_big
    lines.append(
        f"Full batch ({big}): gradreg {g_big['acc']:.3f} in eval mode but "
        f"{g_big['bn']:.3f} with the test set's"
    )
    lines.append(f"BatchNorm statistics (Adam: {a_big['acc']:.3f} and {a_big['bn']:.3f}).")
print("\n".join(lines))

torch.set_num_threads(THREADS)

# %%
# What the figure shows
# ---------------------
# The Newton step changes the training loss more than anything else: it fits the last layer
# to every batch, and the original's metric (the pre-step loss of each batch, averaged over
# the epoch) ends lower than with Adam alone (asserted); the whole-training-set loss in eval
# mode and the test accuracy need not follow, and the Findings give both. The default run is
# short (a few dozen steps), so the eval-mode numbers also depend on how many batches
# BatchNorm's running statistics have seen, which differs between the methods (below).
#
# At full batch an epoch is one step. BatchNorm's running statistics (momentum 0.1) have then
# seen a handful of batches and are still far from the data's, so the eval-mode network is not
# the network that was trained; normalized by the statistics of the test set itself, the same
# network classifies more digits (asserted for gradreg; the Findings give the numbers).
# Reading a curve of eval-mode accuracy after few steps as "the method does not work" would
# be wrong here. The original's full-batch accuracies (after 20 steps, quoted above) are far
# below its mini-batch ones, the same regime.
#
# **Against the original.** The digits (8x8 grey digits, upsampled) are a much easier problem
# than CIFAR-10, so this default run cannot confirm or refute the CIFAR numbers;
# ``CURVLAB_FULL=1`` with ``CURVLAB_DATA`` runs the published setting. One thing to check
# there is whether the reported oscillation of Adam + gradreg is in the network or in
# BatchNorm's running statistics, which the ``BN test`` column answers. As in the original,
# L-BFGS evaluates its closure up to 20 times per step in training mode, and every evaluation
# moves BatchNorm's running statistics: the eval-mode network of an L-BFGS run has seen many
# more batch statistics than Adam's, which matters most when there are few steps. (The
# original also ran one extra forward pass per batch for its log; here the logged loss is the
# step's own first evaluation.)
