r"""
Loss landscapes of a small digits CNN
=====================================

A loss landscape is the empirical risk restricted to a line or a plane through the trained
parameters :math:`\theta`,

.. math::

   a \mapsto L(\theta + a\, d), \qquad (a, b) \mapsto L(\theta + a\, d_1 + b\, d_2).

What the picture shows depends on the directions. Random Gaussian directions are meaningless
until they are scaled to the network: Li et al. (2018) rescale every *filter* of the direction
(a convolution kernel, a row of a linear layer) to the norm of the matching filter of the
weights, so that a step of 1 changes every filter by its own size, whatever the scale
invariances of ReLU networks do to the raw weights. Biases are left out (``ignore="biasbn"``).
The eigenvectors of the Hessian with the largest eigenvalues are the other classic choice: they
are the directions in which the loss curves most, and along them the landscape near
:math:`\theta` is the parabola :math:`L(\theta) + a\, g^\top v + \lambda a^2 / 2`.

This example trains a small CNN on scikit-learn's 8x8 digits for a few seconds, then draws
the 1D and 2D filter-normalized landscapes and the surface spanned by the top two Hessian
eigenvectors. Grids are small (21 points, 15 x 15) so that the script runs in seconds; set
``CURVLAB_FULL=1`` for the 41-point and 41 x 41 grids of the studies.
"""

# %%
# Data and model
# --------------
# The 1,797 digits ship with scikit-learn. We standardize the pixels, train on the first
# 1,200 images and use 400 of them for the landscapes: every grid point is one pass over those
# 400 samples, in eval mode, without gradients.
import matplotlib.pyplot as plt
import torch
from sklearn.datasets import load_digits
from torch import nn

import curvlab as cl
import curvlab.plot as clplot
from curvlab import landscape

STEPS_1D, STEPS_2D = 21, 15
# sphinx_gallery_start_ignore
import os

if os.environ.get("CURVLAB_FULL") == "1":  # the studies' grids
    STEPS_1D, STEPS_2D = 41, 41
# sphinx_gallery_end_ignore

torch.manual_seed(0)  # the model's initialization
digits = load_digits()
X = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
X = (X - X.mean()) / X.std()
y = torch.tensor(digits.target)
X_train, y_train = X[:1200], y[:1200]
eval_data = [(X_train[i : i + 200], y_train[i : i + 200]) for i in range(0, 400, 200)]

model = nn.Sequential(
    nn.Conv2d(1, 8, 3, padding=1),
    nn.ReLU(),
    nn.Conv2d(8, 16, 3, padding=1),
    nn.ReLU(),
    nn.MaxPool2d(2),
    nn.Flatten(),
    nn.Linear(16 * 4 * 4, 10),
)
loss_fn = nn.CrossEntropyLoss()
print(f"{sum(p.numel() for p in model.parameters())} parameters")


def accuracy(out, target):
    return (out.argmax(1) == target).float().mean()


# %%
# A short training run
# --------------------
# Six epochs of Adam with batches of 64 reach about 98% training accuracy.
opt = torch.optim.Adam(model.parameters(), lr=3e-3)
gen = torch.Generator().manual_seed(0)
for _ in range(6):
    perm = torch.randperm(len(X_train), generator=gen)
    for i in range(0, len(X_train), 64):
        idx = perm[i : i + 64]
        opt.zero_grad()
        loss_fn(model(X_train[idx]), y_train[idx]).backward()
        opt.step()
model.eval()
with torch.no_grad():
    train_acc = accuracy(model(X_train), y_train).item()
print(f"training accuracy {train_acc:.3f}")

# %%
# One filter-normalized direction
# -------------------------------
# :func:`~curvlab.landscape.random_directions` draws Gaussian directions from a seed and
# filter-normalizes them; :func:`~curvlab.landscape.line` evaluates the loss (and, here, the
# accuracy) along the first one. The model's parameters are restored bit for bit afterwards.
dirs = landscape.random_directions(model, num=2, seed=0)
line = landscape.line(
    model,
    loss_fn,
    eval_data,
    dirs[0],
    span=(-1, 1),
    steps=STEPS_1D,
    metrics={"accuracy": accuracy},
    progress=False,
)
ax = clplot.landscape_1d(line, metrics=True)
ax.set_title("loss (solid) and accuracy (dashed) along a filter-normalized direction")
ax.figure.tight_layout()

# %%
# The minimum sits at :math:`a = 0` and the loss rises on both sides; a step of 1 along a
# filter-normalized direction perturbs every filter by its own norm, enough to destroy the
# accuracy.
#
# Two directions: a contour plot
# ------------------------------
# :func:`~curvlab.landscape.surface` evaluates the grid ``loss[i, j] = L(theta + a[i] d1 +
# b[j] d2)``. Contours of the logarithm of the loss show the basin around the trained model
# (the cross).
surf = landscape.surface(model, loss_fn, eval_data, dirs, steps=STEPS_2D, progress=False)
ax = clplot.landscape_contour(surf, levels=20, log=True)
ax.set_title("log10 loss, filter-normalized plane")

# %%
# The top two Hessian eigenvectors
# --------------------------------
# :class:`curvlab.HessianOperator` is the Hessian of the loss over the same 400 samples as a
# linear operator, and :func:`~curvlab.landscape.eigen_directions` takes its top two
# eigenvectors with restarted Lanczos (:func:`curvlab.eigsh`): unit vectors, sign-fixed.
H = cl.HessianOperator(model, loss_fn, eval_data)
eig_dirs, eigvals = landscape.eigen_directions(H, num=2, seed=0, return_eigenvalues=True)
print("top Hessian eigenvalues:", ", ".join(f"{v:.4g}" for v in eigvals.tolist()))

# %%
# Along the top eigenvector the loss near the minimum is the parabola
# :math:`L(\theta) + a\, g^\top v_1 + \lambda_1 a^2 / 2`; we compare it with the measured
# slice (the gradient term is small at a trained model). They agree near :math:`a = 0`; further
# out the loss is no longer quadratic.
_, grad = H.risk.loss_and_gradient()
top = landscape.line(
    model, loss_fn, eval_data, eig_dirs[0], span=(-1, 1), steps=STEPS_1D, progress=False
)
a = top.coords
parabola = top.loss[STEPS_1D // 2] + a * float(grad @ eig_dirs[0]) + 0.5 * float(eigvals[0]) * a**2
ax = clplot.landscape_1d(top, label="measured")
ax.plot(a, parabola, "--", label=r"quadratic model, $\lambda_1$ = " + f"{float(eigvals[0]):.2f}")
ax.set_ylim(top.loss.min() - 0.05, float(top.loss.max()) * 1.2)
ax.legend()
ax.set_title("along the top Hessian eigenvector")

# %%
# The surface spanned by the top two eigenvectors, drawn in 3D. The eigenvectors have unit
# norm, so the span is in parameter units, unlike the filter-normalized plane above.
eig_surf = landscape.surface(
    model, loss_fn, eval_data, eig_dirs, span=(-1, 1), steps=STEPS_2D, progress=False
)
ax = clplot.landscape_surface(eig_surf)
ax.set_title(r"loss over the plane of $v_1$, $v_2$")
ax.set_xlabel(r"$v_1$")
ax.set_ylabel(r"$v_2$")
plt.show()
