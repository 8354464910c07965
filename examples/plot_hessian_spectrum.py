"""
The Hessian spectrum of a small network
=======================================

This example trains a small multilayer perceptron on the scikit-learn digits and then looks at
the curvature of its loss at the point reached: the top Hessian eigenvalues, the whole
eigenvalue density, the trace, and the spectral gap. Every estimator in
``curvlab.linalg`` only multiplies the Hessian with vectors (Hessian-vector products over the
data set), never forms it, and reports how many products it needed.

It also shows why :func:`curvlab.eigsh` (restarted Lanczos) replaces the power iteration of the
classic tools: to reach the top eigenvalue to a relative accuracy of ``1e-4`` it needs a
fraction of the products.
"""

# %%
# Train a small network
# ---------------------
# The 8x8 digits (1,797 images, 64 pixels) are standardized and fed to a 64-32-10 tanh MLP
# (2,410 parameters), trained full batch with Adam for a few hundred steps. Computing in
# float64 lets the eigensolver reach its default tolerance (``1e-6`` relative residual).
import time

import matplotlib.pyplot as plt
import torch
from sklearn.datasets import load_digits
from torch import nn

import curvlab as cl

NUM, PROBES, LANCZOS_STEPS = 512, 4, 30  # samples for the curvature; SLQ probes and steps
# sphinx_gallery_start_ignore
import os

if os.environ.get("CURVLAB_FULL") == "1":  # all 1,797 digits, the published SLQ settings
    NUM, PROBES, LANCZOS_STEPS = None, 10, 80
# sphinx_gallery_end_ignore
torch.manual_seed(0)
X, y = load_digits(return_X_y=True)
X = torch.tensor(X, dtype=torch.float64)
X = (X - X.mean(0)) / (X.std(0) + 1e-8)
y = torch.tensor(y)

model = nn.Sequential(nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10)).double()
loss_fn = nn.CrossEntropyLoss()
opt = torch.optim.Adam(model.parameters(), lr=1e-2)
for _ in range(300):
    opt.zero_grad()
    loss = loss_fn(model(X), y)
    loss.backward()
    opt.step()
print(f"training loss after 300 Adam steps: {loss.item():.4f}")

# %%
# The Hessian as an operator
# --------------------------
# :class:`curvlab.HessianOperator` is the Hessian of the mean loss over ``data``, a list of
# ``(inputs, targets)`` batches. By default the curvature is measured on 512 training
# samples (as PyHessian measures it on a batch); ``CURVLAB_FULL=1`` uses all 1,797.
num = X.shape[0] if NUM is None else NUM
data = [(X[i : i + 256], y[i : i + 256]) for i in range(0, num, 256)]
H = cl.HessianOperator(model, loss_fn, data)
print(f"Hessian of size {H.shape[0]} x {H.shape[1]} over {num} samples")

# %%
# Top eigenvalues
# ---------------
# :func:`curvlab.eigsh` returns the ``k`` largest eigenvalues in ascending order, with their
# residuals ``||H x - lambda x||`` (an exact eigenvalue lies within the residual of each
# reported one) and the number of Hessian-vector products used.
t0 = time.perf_counter()
top = cl.eigsh(H, k=10, seed=0)
print(f"top-10 eigenvalues ({top.num_matvecs} products, {time.perf_counter() - t0:.1f} s):")
for lam, res in zip(top.eigenvalues.flip(0).tolist(), top.residuals.flip(0).tolist()):
    print(f"  {lam: .6f}   residual {res:.1e}")
print("converged:", top.converged)

# %%
# Lanczos against power iteration
# -------------------------------
# How many products does each method need to get the top eigenvalue to a relative accuracy of
# ``1e-4``? The reference is the converged ``eigsh`` value. A single :func:`curvlab.lanczos`
# run of 30 steps gives the Lanczos estimate after every number of products at once (the
# largest eigenvalue of the leading block of its tridiagonal matrix); this is what
# ``eigsh(k=1)`` computes before its first restart. Power iteration is run step by step.
lam_ref = float(top.eigenvalues[-1])
lz = cl.lanczos(H, 30, seed=1)
T = lz.tridiagonal()
lanczos_err = [
    abs(float(torch.linalg.eigvalsh(T[:m, :m])[-1]) - lam_ref) / lam_ref for m in range(1, 31)
]

g = torch.Generator().manual_seed(1)
v = torch.randn(H.shape[0], dtype=torch.float64, generator=g)
v /= v.norm()
power_err = []
for _ in range(80):
    w = H @ v
    power_err.append(abs(float(v @ w) - lam_ref) / lam_ref)
    v = w / w.norm()


def first_below(errs, level=1e-4):
    return next((i + 1 for i, e in enumerate(errs) if e <= level), None)


print(
    f"products to reach 1e-4: Lanczos {first_below(lanczos_err)}, "
    f"power iteration {first_below(power_err)}"
)
res_e = cl.eigsh(H, k=1, seed=1)
res_p = cl.power_iteration(H, seed=1)
print("with their default stopping rules:")
print(f"  eigsh {res_e.num_matvecs} products (residual {float(res_e.residuals[0]):.1e})")
print(f"  power_iteration {res_p.num_matvecs} products (residual {float(res_p.residuals[0]):.1e})")

fig, ax = plt.subplots(figsize=(6, 3.5))
ax.semilogy(range(1, 31), lanczos_err, "o-", ms=3, label="Lanczos (eigsh)")
ax.semilogy(range(1, 81), power_err, "-", label="power iteration")
ax.axhline(1e-4, color="gray", ls=":", lw=1)
ax.set_xlabel("Hessian-vector products")
ax.set_ylabel("relative error of the top eigenvalue")
ax.legend()
fig.tight_layout()

# %%
# Spectral density
# ----------------
# Stochastic Lanczos quadrature (:func:`curvlab.spectral_density`) runs a few Lanczos
# recurrences from random probes, all in one block of products, and turns each into a Gauss
# quadrature rule of the spectrum. On a logarithmic scale the picture is the familiar one for
# trained networks: a bulk of eigenvalues near zero (including small negative ones) and a few
# isolated outliers, the eigenvalues found above.
sd = cl.spectral_density(H, num_probes=PROBES, num_iter=LANCZOS_STEPS, seed=0)
print(f"spectral density: {sd.num_probes} probes, {sd.num_matvecs} products")
ax = sd.plot(log=True, sigma=2e-3)
for lam in top.eigenvalues.tolist():
    ax.axvline(lam, color="C3", lw=0.5, alpha=0.5)
ax.set_title("Hessian eigenvalue density (red: top-10 from eigsh)")

# %%
# Trace and spectral gap
# ----------------------
# The trace (the sum of all eigenvalues, a common "sharpness" measure) comes from Hutch++,
# which spends a third of its products on sketching the dominant eigenvectors; the SLQ density
# gives a second estimate, ``n`` times its mean. The spectral gap of study C is the ratio of
# the two largest eigenvalues.
tr = cl.trace(H, num_matvecs=45, seed=0)
print(f"trace (Hutch++, {tr.num_matvecs} products): {tr.estimate:.4f} +- {tr.std_error:.4f}")
print(f"trace (SLQ): {sd.dim * sd.moment(1):.4f}")
gap = cl.spectral_gap(H, seed=0)
print(f"spectral gap: lambda1 = {gap.lambda1:.5f}, lambda2 = {gap.lambda2:.5f}")
print(f"  ratio {gap.ratio:.3f}, difference {gap.difference:.5f} ({gap.num_matvecs} products)")
