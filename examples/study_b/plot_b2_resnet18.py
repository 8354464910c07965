r"""
B2. The step-size family on a ResNet-18
=======================================

.. admonition:: Study B on this page
   :class: note

   **The original** (JY-sakata/second-ord-adaptive-opt) trained a CIFAR ResNet-18 on
   CIFAR-10 (batch 256, 128 epochs, the cosine schedule to a tenth of the rate, no weight
   decay) with SGD with momentum, Adam, its Sophia and its SSDH, SADH and SSVP, each at the
   setting its tuning found, four seeds, and logged training loss and accuracy per iteration
   and the test metrics per epoch (on wandb; no logs are in its repository).

   **This page** runs the six at the study's published ResNet-18 settings on an embedded
   stand-in, three seeds, and reports training loss and test accuracy per epoch with their
   spread. ``CURVLAB_FULL=1`` runs the published size: the full-width ResNet-18 on
   CIFAR-10 for 128 epochs, and first tunes every optimizer with Optuna's TPE sampler over
   the study's box (``B_TUNE_TRIALS`` trials of ``B_TUNE_EPOCHS`` epochs each, 20 and 4 by
   default); this needs a GPU. ``CURVLAB_ORIGINAL=1`` runs the full size at the published
   settings only, with the original's probes (row sums for SSDH and SADH, Gaussian for
   the Sophia-style rule) and its four seeds.

   **Not here:** the original's per-iteration logs and its data augmentation (random
   crops with 4-pixel padding and horizontal flips; none here);
   tuning at the default size (a trial costs as much as a run, so the default uses the
   published settings; with so short a run they favour some optimizers over others, which
   the page cannot correct).

   **Data:** default: scikit-learn's digits (embedded; 8x8, 1,437 training and 360 test
   images) for a ResNet-18 of one eighth of the width (widths 8-16-32-64; the script
   prints its size). Full size: CIFAR-10's python version (the ``cifar-10-batches-py`` folder
   with ``data_batch_1`` ... ``data_batch_5`` and ``test_batch``) in the folder named by
   ``CURVLAB_CIFAR10`` (or ``$CURVLAB_DATA/cifar-10-batches-py``).

The six optimizers and the skeleton they share are described on page B1. The page uses the
study's configuration: batch 256, momentum :math:`\beta_1 = 0.9`, curvature refreshed every
10 steps, the cosine schedule stepped per epoch, BatchNorm in training mode during the steps
(the Hessian-vector products go through it).
"""

# sphinx_gallery_start_ignore
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(globals().get("__file__", "b2.py"))))
from _b_common import ORIGINAL_SEEDS, task_mode  # noqa: E402

# CURVLAB_FULL=1, CURVLAB_ORIGINAL=1, CURVLAB_SMOKE=1 (a few steps, for the test suite);
# one intra-op thread below full size (small convolutions: as fast, and reproducible)
MODE = task_mode(tune_epochs=4)
FULL, DEVICE = MODE.full, MODE.device
if MODE.smoke:
    EPOCHS, SEEDS, TRAIN_LIMIT = 1, [0, 1], 256
elif FULL:
    EPOCHS, SEEDS, TRAIN_LIMIT = 128, ORIGINAL_SEEDS if MODE.original else [0, 1, 2], None
else:
    EPOCHS, SEEDS, TRAIN_LIMIT = 6, [0, 1, 2], None
# sphinx_gallery_end_ignore

# %%
# Data
# ----
# By default, the embedded digits; at full size, CIFAR-10 read from its python pickles
# (no torchvision needed), normalized per channel with the training set's statistics.
import pickle
import textwrap
from pathlib import Path

import numpy as np
import torch.nn.functional as F
from _b_common import NAMES, curves_figure, run_epochs, run_seeds, summary_table, tune_settings
from _b_common import make_optimizer as make

from curvlab.problems import ResNet, digits


def load_cifar10():
    root = os.environ.get("CURVLAB_CIFAR10")
    if not root and os.environ.get("CURVLAB_DATA"):
        root = os.path.join(os.environ["CURVLAB_DATA"], "cifar-10-batches-py")
    folder = Path(root) if root else None
    if folder is None or not (folder / "test_batch").is_file():
        raise SystemExit(
            "CURVLAB_FULL=1 needs CIFAR-10's python version: set CURVLAB_CIFAR10 to the "
            "cifar-10-batches-py folder (data_batch_1..5, test_batch), or CURVLAB_DATA to "
            f"the folder holding it (looked in {folder})."
        )

    def read(name):
        with open(folder / name, "rb") as f:
            d = pickle.load(f, encoding="bytes")
        x = torch.tensor(np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        return x.float() / 255, torch.tensor(d[b"labels"], dtype=torch.long)

    parts = [read(f"data_batch_{i}") for i in range(1, 6)]
    X, y = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    Xt, yt = read("test_batch")
    mean, std = X.mean((0, 2, 3), keepdim=True), X.std((0, 2, 3), keepdim=True)
    return (X - mean) / std, y, (Xt - mean) / std, yt


if FULL:
    X, y, X_test, y_test = load_cifar10()
    WIDTHS = (64, 128, 256, 512)
else:
    X, y = digits(size=8, split="train").tensors
    X_test, y_test = digits(size=8, split="test").tensors
    WIDTHS = (8, 16, 32, 64)
if TRAIN_LIMIT:
    X, y = X[:TRAIN_LIMIT], y[:TRAIN_LIMIT]
X, y, X_test, y_test = (t.to(DEVICE) for t in (X, y, X_test, y_test))
BATCH = 256
print(f"{len(X)} training and {len(X_test)} test images of shape {tuple(X.shape[1:])}")
if not (FULL or MODE.smoke):  # the sizes the box above states
    assert (len(X), len(X_test), X.shape[-1]) == (1437, 360, 8)


def new_model(seed):
    torch.manual_seed(seed)
    return ResNet(in_channels=X.shape[1], widths=WIDTHS, blocks=2).to(DEVICE)


print(
    f"ResNet-18, widths {WIDTHS}: {sum(p.numel() for p in new_model(0).parameters()):,} parameters"
)

# %%
# The study's published settings
# ------------------------------
# Quoted from JY-sakata/second-ord-adaptive-opt@24787029c342e73180657ec0bc1c80312847b89b:
# optimiser_configuration.py (``get_best_optimiser_config_resnet18_cifar10``), as
# (lr, rho, beta2); SGD has momentum 0.9 and no beta2.
PUBLISHED = {
    "SGD": (0.013779694301860598, None, None),
    "Adam": (0.005167177473387094, None, 0.9856019660982269),
    "Sophia-style": (0.019151648350265, 0.0126966567623034, 0.985239675114058),
    "SSDH": (0.13277684691947564, 0.012674411273821481, 0.9962831495943887),
    "SADH": (0.11359105429374, 0.00268745510805206, 0.995824597621633),
    "SSVP": (0.012904851354049134, 0.012603469080986496, 0.9902417663300304),
}


# %%
# One run
# -------
# A seed sets the initialization, the shuffling order and the probes. After every epoch:
# the mean training loss of the epoch's batches (as the original logged it) and the test
# loss and accuracy.
def evaluate(model):
    loss, correct = 0.0, 0
    for xb, yb in zip(X_test.split(1000), y_test.split(1000)):
        out = model(xb)
        loss += float(F.cross_entropy(out, yb, reduction="sum"))
        correct += int((out.argmax(1) == yb).sum())
    return {"test loss": loss / len(X_test), "test accuracy": correct / len(X_test)}


def run(name, hp, seed, epochs):
    model = new_model(seed)
    opt = make(name, model.parameters(), *hp, seed=seed, probes=MODE.probes)
    gen = torch.Generator().manual_seed(seed)

    def batches(epoch):
        perm = torch.randperm(len(X), generator=gen).to(DEVICE)
        return [perm[i : i + BATCH] for i in range(0, len(X), BATCH)]

    def loss_of(idx):
        return F.cross_entropy(model(X[idx]), y[idx])

    return run_epochs(model, opt, epochs, batches, loss_of, lambda: evaluate(model))


# %%
# Tuning (full size only)
# -----------------------
# Optuna's TPE sampler (seed 0) over the study's box, scored by the log of the last epoch's
# mean training loss, as on page B1.
settings = {"published": PUBLISHED}
if MODE.tune_trials:
    settings["tuned here"] = tune_settings(run, MODE.tune_trials, MODE.tune_epochs)

# %%
# The runs
# --------
runs = run_seeds(run, settings, SEEDS, EPOCHS)
summary = summary_table(runs, settings, EPOCHS, "test accuracy", "test acc", ("8.4f", "6.4f"))

# %%
# Curves
# ------
# Mean over the seeds, the band from the smallest to the largest.
curves_figure(
    runs,
    "test accuracy",
    ("training loss (epoch mean)", "test accuracy"),
    logy=(True, False),
)

torch.set_num_threads(MODE.threads)

# %%
# Findings
# --------
# Written by the script from the table above.
label = "published"
by_loss = sorted(NAMES, key=lambda n: summary[n, label][0][0])
by_acc = sorted(NAMES, key=lambda n: -summary[n, label][1][0])
best, second = by_acc[0], by_acc[1]
gap = summary[best, label][1][0] - summary[second, label][1][0]
sd = max(summary[best, label][1][1], summary[second, label][1][1])
lines = [
    f"After {EPOCHS} epochs at the published settings, the training loss ranks "
    + " < ".join(by_loss)
    + "; test accuracy ranks "
    + " > ".join(by_acc)
    + ".",
    f"{best} leads {second} by {gap:.3f} in test accuracy, "
    + ("more" if gap > sd else "less")
    + f" than the larger of their seed standard deviations ({sd:.3f}).",
]
print("\nFindings")
for line in lines:
    print(textwrap.fill(line, 80, subsequent_indent="  ", break_on_hyphens=False))

# %%
# The published settings were tuned by the study for 128 epochs of CIFAR-10; on a run this
# short and a data set this small they are a starting point, not a tuned comparison, and
# the ranking above says how the six fare at them here, nothing more. The full size
# (``CURVLAB_FULL=1``) tunes every optimizer on the task itself before the final runs.
