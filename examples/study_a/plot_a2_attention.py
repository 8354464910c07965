r"""
A2. Attention layer: a Newton step on the input projection
==========================================================

.. admonition:: Study A, problem 2, at a glance

    **The original** (VladZetta/alternating_layers) fit one
    ``nn.MultiheadAttention(16, 1 head)`` to random targets (10,000 sequences, batch 64, 20
    epochs) with six configurations: GD and Adam on ``out_proj``, and four mixed runs with a
    damped Newton step (GradReg or a fixed damping) on ``in_proj_weight``. It plotted the
    mean over each epoch of the batch losses. **This page** runs the six configurations with
    the original's learning rates and parameter split, on 3 seeds, and shows two metrics side
    by side: the original's (for the mixed runs, the loss of a batch *after* the steps on that
    same batch) and the loss on the whole training set, against the floor of the best
    constant output. **Not covered:** the original's earlier, unconfigured "Adam+Newton, lr
    0.01, 50 epochs" checkpoint (it matches no configuration file; it diverges), and its CG
    solver's handling of negative curvature (curvlab's CG stops there; the original's runs
    through). **Data:** none; by default 1,024 sequences and 6 epochs (a stand-in for the
    published size), ``CURVLAB_FULL=1`` the published 10,000 sequences and 20 epochs on 3
    seeds, ``CURVLAB_ORIGINAL=1`` the original's seed-42 data, initialization and batch
    order, compared with its logged curves.

Inputs :math:`X` and targets :math:`Y` are independent standard normal tensors of shape
:math:`(N, 10, 16)`, so nothing can be learned beyond the mean of :math:`Y`: the MSE of the
best constant output is the floor any honest training loss stays near. The second-order block
is ``in_proj_weight`` (the stacked query, key and value projections, :math:`3 \cdot 16 \times
16 = 768` parameters), trained with :class:`curvlab.optim.DampedNewton` (conjugate gradients
on Hessian-vector products through the attention); the first-order method trains
``out_proj``. As in the original, ``in_proj_bias`` is in neither optimizer (it stays zero),
and the first-order baselines train ``out_proj`` only.

Hessian-vector products need a twice-differentiable attention: the fused
``scaled_dot_product_attention`` kernels have no double backward on some backends.
:class:`curvlab.problems.SelfAttention` asks ``nn.MultiheadAttention`` for its attention
weights, which sends it down the explicit matrix-product path (as the original's layer, which
also asked for them).
"""

# sphinx_gallery_start_ignore
import os

import torch

FULL = os.environ.get("CURVLAB_FULL", "0") == "1"
SMOKE = os.environ.get("CURVLAB_SMOKE", "0") == "1"  # a few steps, for the test suite
ORIGINAL = os.environ.get("CURVLAB_ORIGINAL", "0") == "1"
if SMOKE:
    N_TRAIN, EPOCHS, SEEDS = 128, 1, [42]
elif ORIGINAL:
    N_TRAIN, EPOCHS, SEEDS = 10_000, 20, [42]
elif FULL:
    N_TRAIN, EPOCHS, SEEDS = 10_000, 20, [42, 0, 1]
else:
    N_TRAIN, EPOCHS, SEEDS = 1_024, 6, [42, 0, 1]
# One intra-op thread: the printed numbers then do not depend on the core count, and the
# script does not slow down when other processes share the CPU. Restored at the end.
THREADS = torch.get_num_threads()
torch.set_num_threads(1)
# sphinx_gallery_end_ignore

# %%
# The six configurations
# ----------------------
# The original's configuration files (``configs/attention_layer/*.yaml`` of
# ``VladZetta/alternating_layers@b866165a3423c422aa6d612da0077ebc93093cb4``): the learning rate
# is that of the first-order block; "Newton" is the original's ``variant: None`` with
# ``reg: 0.01``, a fixed damping :math:`\lambda = 0.01` and unit step; "GradReg" is
# :math:`\lambda = \sqrt{L \lVert g \rVert}` with :math:`L = 1`. Note the GD + Newton
# configuration: lr 0.001, not GD's 0.5, and 20 epochs.
#
# Each mixed step alternates as the original did: the Newton step on ``in_proj_weight``
# (DampedNewton takes the closure, computes the gradient and its Hessian-vector products),
# then the first-order step on ``out_proj`` with a fresh forward pass at the new weights.
import textwrap

import matplotlib.pyplot as plt
import numpy as np

from curvlab.optim import DampedNewton
from curvlab.optim import step as optim_step
from curvlab.problems import SelfAttention

CONFIGS = {  # name: (first-order optimizer of out_proj, its lr, Newton block or None)
    "GD": (torch.optim.SGD, 0.5, None),
    "GD+GradReg": (torch.optim.SGD, 0.5, dict(variant="gradreg", L=1.0)),
    "GD+Newton": (torch.optim.SGD, 0.001, dict(variant="fixed", damping=0.01)),
    "Adam": (torch.optim.Adam, 0.001, None),
    "Adam+GradReg": (torch.optim.Adam, 0.1, dict(variant="gradreg", L=1.0)),
    "Adam+Newton": (torch.optim.Adam, 0.001, dict(variant="fixed", damping=0.01)),
}
# The original's logged curves (attention_curves.json: losses = the epoch means of its
# metric; entry 0 the mean batch loss before training), 10,000 sequences, seed 42; source
# VladZetta/alternating_layers@b866165a3423c422aa6d612da0077ebc93093cb4:
# results/attention_layer/checkpoints/method_<name>_*.pth. Entries 0, 1, 2 and 20.
ORIGINAL_LOGGED = {
    "GD": (1.0263, 1.0095, 1.0018, 0.999486293003058),
    "GD+GradReg": (1.0263, 0.9996, 0.9980, 0.9917763221036097),
    "GD+Newton": (1.0263, 2.3434, 0.9824, 0.9820063862071675),
    "Adam": (1.0263, 1.0114, 1.0020, 0.9994632932031231),
    "Adam+GradReg": (1.0263, 0.9985, 0.9894, 0.9748975099272029),
    "Adam+Newton": (1.0263, 23.5118, 0.9817, 0.9813493797733526),
}


def train(name: str, seed: int) -> dict:
    """One run. The data, the initialization and the batch order come from the global
    generator seeded with ``seed`` in the original's order (X, Y, the layer, then the
    loader's shuffles), inside ``fork_rng`` so that the global state is left as it was."""
    first_cls, lr, newton_kw = CONFIGS[name]
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        X = torch.randn(N_TRAIN, 10, 16)
        Y = torch.randn(N_TRAIN, 10, 16)
        attn = SelfAttention(16, 1)
        attn.in_proj_bias.requires_grad_(False)  # in no optimizer, as in the original
        loader = torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(X, Y), batch_size=64, shuffle=True
        )
        mse = torch.nn.MSELoss()
        first = first_cls([attn.out_proj.weight, attn.out_proj.bias], lr=lr)
        newton = None
        if newton_kw is None:
            attn.in_proj_weight.requires_grad_(False)  # the baselines train out_proj only
        else:
            newton = DampedNewton([attn.in_proj_weight], **newton_kw)

        def full_loss() -> float:
            with torch.no_grad():
                return float(mse(attn(X), Y))

        with torch.no_grad():  # the original's entry 0: mean batch loss before training
            reported = [float(np.mean([float(mse(attn(xb), yb)) for xb, yb in loader]))]
        full = [full_loss()]
        diverged = False
        for _ in range(EPOCHS):
            batch = []
            for xb, yb in loader:

                def closure(xb=xb, yb=yb):
                    return mse(attn(xb), yb)

                if newton is None:  # the original logs the loss before the step
                    batch.append(float(optim_step(first, closure)))
                else:
                    newton.step(closure)  # Newton on in_proj_weight
                    if not bool(torch.isfinite(attn.in_proj_weight).all()):
                        diverged = True
                        break
                    optim_step(first, closure)  # then the first-order step, a fresh forward
                    with torch.no_grad():  # the original logs the loss after both steps
                        batch.append(float(closure()))
                if not batch[-1] < 1e6:  # overflowed, or NaN: the run has diverged
                    diverged = True
                    break
            if diverged:
                break
            reported.append(float(np.mean(batch)))
            full.append(full_loss())
        floor = float((Y - Y.mean(dim=(0, 1))).square().mean())
    pad = [np.nan] * (EPOCHS + 1 - len(full))  # the epochs a diverged run did not finish
    return dict(
        reported=np.array(reported + pad),
        full=np.array(full + pad),
        floor=floor,
        diverged=diverged,
    )


results = {name: [train(name, seed) for seed in SEEDS] for name in CONFIGS}
floors = np.array([r["floor"] for r in results["GD"]])

# %%
# Results
# -------
# ``post-step batch``: the original's metric at the last epoch (for the mixed runs the mean,
# over the epoch's batches, of each batch's loss after the steps on it; for GD and Adam the
# loss before the step). ``full data``: the MSE on the whole training set after the last
# epoch. ``floor``: the MSE of the best constant output on the same data. Mean and standard
# deviation over the seeds.
print("The original's logged metric (N = 10,000, seed 42), epochs 0, 1, 2 and 20:")
for name, logged in ORIGINAL_LOGGED.items():
    print(f"  {name:13s} " + " ".join(f"{v:8.4f}" for v in logged))
print(f"This run: N = {N_TRAIN} sequences, {EPOCHS} epochs, {len(SEEDS)} seeds {SEEDS}")
print(f"constant-output floor: {floors.mean():.5f} (sd {floors.std():.5f})")
print(
    f"{'method':13s} {'post-step batch':>15s} {'sd':>8s} {'full data':>10s} {'sd':>8s} "
    f"{'full - floor':>12s} {'diverged':>8s}"
)
summary = {}
for name, runs in results.items():
    ok = [i for i, r in enumerate(runs) if not r["diverged"]]
    rep = np.array([runs[i]["reported"][-1] for i in ok])
    full = np.array([runs[i]["full"][-1] for i in ok])
    gap = full - floors[ok]
    nan = float("nan")
    summary[name] = dict(
        rep=rep.mean() if ok else nan,
        full=full.mean() if ok else nan,
        gap=gap.mean() if ok else nan,
        gap_min=gap.min() if ok else nan,
        diverged=len(runs) - len(ok),
    )
    print(
        f"{name:13s} {summary[name]['rep']:15.5f} {rep.std() if ok else nan:8.5f} "
        f"{summary[name]['full']:10.5f} {full.std() if ok else nan:8.5f} "
        f"{summary[name]['gap']:12.2e} {len(runs) - len(ok):5d}/{len(runs)}"
    )
print("(mean and sd over the seeds that did not diverge)")

fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
epochs = np.arange(EPOCHS + 1)
for ax, key, title in zip(
    axes, ["reported", "full"], ["original's metric (post-step batch loss)", "whole training set"]
):
    for name, runs in results.items():
        curves = np.stack([r[key] for r in runs])
        style = "-" if "+" in name else "--"
        (line,) = ax.plot(epochs, np.nanmean(curves, 0), style, marker=".", label=name)
        lo, hi = np.nanmin(curves, 0), np.nanmax(curves, 0)
        ax.fill_between(epochs, lo, hi, color=line.get_color(), alpha=0.2)
    ax.axhline(floors.mean(), color="0.3", ls=":", label="best constant output")
    ax.set_title(title)
    ax.set_xlabel("epoch")
axes[0].set_ylabel("MSE (mean over seeds, band: min-max)")
lowest = min(float(np.nanmin([r["reported"] for r in runs])) for runs in results.values())
axes[0].set_ylim(min(lowest, floors.mean()) - 0.01, floors.mean() + 0.06)
axes[1].legend(fontsize="small", loc="center left", bbox_to_anchor=(1.0, 0.5))
fig.tight_layout()

# sphinx_gallery_start_ignore
if ORIGINAL:  # the logged curves, entry by entry where they are quoted
    print(f"{'method':13s} {'entry':>5s} {'original':>10s} {'curvlab':>10s}")
    for name, logged in ORIGINAL_LOGGED.items():
        ours = results[name][0]["reported"]
        for i, v in zip((0, 1, 2, EPOCHS), logged):
            print(f"{name:13s} {i:5d} {v:10.4f} {ours[i]:10.4f}")
# sphinx_gallery_end_ignore

# %%
# Findings
# --------
# Formatted from the results above; the assertions make a stale claim fail the build.
mixed = [n for n in CONFIGS if "+" in n and summary[n]["diverged"] < len(SEEDS)]
gradreg = ["GD+GradReg", "Adam+GradReg"]
published = N_TRAIN == 10_000 and EPOCHS == 20
if not SMOKE:
    # The original's metric is optimistic for the mixed runs: below the full-data loss ...
    assert all(summary[n]["rep"] < summary[n]["full"] for n in gradreg), summary
    # ... and below both first-order baselines.
    assert max(summary[n]["rep"] for n in gradreg) < min(
        summary["GD"]["rep"], summary["Adam"]["rep"]
    ), summary
if published:  # at the published size every mixed run ends above the floor, on every seed
    assert all(summary[n]["gap_min"] > 0 for n in mixed), summary
gaps = [summary[n]["gap"] for n in mixed]
lines = [
    f"Floor (best constant output): {floors.mean():.5f}. By the original's metric the",
    "GradReg runs end at " + ", ".join(f"{n} {summary[n]['rep']:.5f}" for n in gradreg) + ",",
    f"below GD ({summary['GD']['rep']:.5f}) and Adam ({summary['Adam']['rep']:.5f}); on the "
    "whole training set",
    "they end at " + ", ".join(f"{summary[n]['full']:.5f}" for n in gradreg) + ". Full data "
    f"minus floor, mixed runs: {min(gaps):.2e}",
    f"to {max(gaps):.2e} (GD {summary['GD']['gap']:.2e}, Adam {summary['Adam']['gap']:.2e}). "
    "Diverged seeds:",
]
lines += textwrap.wrap(", ".join(f"{n} {summary[n]['diverged']}/{len(SEEDS)}" for n in CONFIGS), 78)
print("\n".join(lines))

torch.set_num_threads(THREADS)

# %%
# What the figures show
# ---------------------
# **Why the original's mixed runs looked better.** The left panel is what the original
# plotted. For a mixed run each point is the mean of batch losses measured *after* the Newton
# step and the first-order step on that very batch: a damped Newton step on 768 parameters
# fits a batch of 64 sequences noticeably, so the number measures how well each batch was
# memorized, not how well the layer fits the data. The first-order baselines log the loss
# before the step, an honest estimate. On the whole training set (right panel) the GradReg
# runs end above their own post-step numbers (asserted), near the floor of the best constant
# output; at the published size (``CURVLAB_FULL=1``, ``CURVLAB_ORIGINAL=1``) the script asserts
# that every mixed run ends above that floor. The Findings above give the numbers. (The
# dashed GD and Adam curves lie close together and can hide one another; the table separates
# them.)
#
# **GD + Newton in the original's configuration** is lr 0.001 for ``out_proj`` with the fixed
# damping 0.01, and 20 epochs; the original's log shows a jump in epoch 1 (quoted above) and
# no divergence. An earlier version of this page ran it at GD's lr 0.5 for all three GD runs
# and saw it diverge; that was not the original's configuration. The fixed damping can leave
# :math:`H + \lambda I` indefinite on this block, so its steps are erratic: the table's last
# column says on how many seeds a run diverged here (curvlab's CG stops at the first
# direction of negative curvature, the original's ran through it), and the curves of the
# Newton runs leave the plotted range in their first epochs.
#
# **The Adam runs** are the original's three: Adam (lr 0.001) on ``out_proj`` alone, which
# creeps towards the floor like GD, and the mixed Adam + GradReg (Adam at lr 0.1) and Adam +
# Newton (lr 0.001). In the original's log Adam + GradReg reports the lowest loss of all six,
# a large Adam step on a batch the Newton step has just fitted.
#
# **Original mode.** ``CURVLAB_ORIGINAL=1`` draws the data, the layer and the batch order from
# ``torch.manual_seed(42)`` in the original's order (10,000 sequences, 20 epochs) and prints
# its curves next to the logged ones at the quoted epochs. A recorded run (below): the
# first-order runs and both GradReg runs reproduce the original's logged values to the four
# printed decimals, so the metric above is the one the original plotted. The two fixed-damping
# Newton runs do not: curvlab's CG stops at the first direction of negative curvature (the
# damping 0.01 leaves the system indefinite) and at a relative residual of
# :math:`10^{-5}`, while the original's CG ran through negative curvature for up to 768
# iterations; both jump early and settle near the logged values. At this size every mixed run
# ends above the constant-output floor on the whole training set (the script asserts it there).
#
# .. code-block:: text
#
#    recorded run, 2026-12-02, commit d500b7e, 2-core CPU (shared; 5 min CPU time)
#    CURVLAB_ORIGINAL=1
#
#    This run: N = 10000 sequences, 20 epochs, 1 seeds [42]
#    constant-output floor: 0.99947 (sd 0.00000)
#    method        post-step batch       sd  full data       sd full - floor diverged
#    GD                    0.99949  0.00000    0.99944  0.00000    -3.33e-05     0/1
#    GD+GradReg            0.99176  0.00000    1.00637  0.00000     6.89e-03     0/1
#    GD+Newton             0.99151  0.00000    1.02923  0.00000     2.98e-02     0/1
#    Adam                  0.99946  0.00000    0.99938  0.00000    -9.18e-05     0/1
#    Adam+GradReg          0.97490  0.00000    1.11389  0.00000     1.14e-01     0/1
#    Adam+Newton           0.98288  0.00000    1.03977  0.00000     4.03e-02     0/1
#    (mean and sd over the seeds that did not diverge)
#    method        entry   original    curvlab
#    GD                0     1.0263     1.0263
#    GD                1     1.0095     1.0095
#    GD                2     1.0018     1.0018
#    GD               20     0.9995     0.9995
#    GD+GradReg        0     1.0263     1.0263
#    GD+GradReg        1     0.9996     0.9996
#    GD+GradReg        2     0.9980     0.9980
#    GD+GradReg       20     0.9918     0.9918
#    GD+Newton         0     1.0263     1.0263
#    GD+Newton         1     2.3434     6.2621
#    GD+Newton         2     0.9824     1.8153
#    GD+Newton        20     0.9820     0.9915
#    Adam              0     1.0263     1.0263
#    Adam              1     1.0114     1.0114
#    Adam              2     1.0020     1.0020
#    Adam             20     0.9995     0.9995
#    Adam+GradReg      0     1.0263     1.0263
#    Adam+GradReg      1     0.9985     0.9985
#    Adam+GradReg      2     0.9894     0.9894
#    Adam+GradReg     20     0.9749     0.9749
#    Adam+Newton       0     1.0263     1.0263
#    Adam+Newton       1    23.5118     3.7381
#    Adam+Newton       2     0.9817   779.7577
#    Adam+Newton      20     0.9813     0.9829
#    Floor (best constant output): 0.99947. By the original's metric the
#    GradReg runs end at GD+GradReg 0.99176, Adam+GradReg 0.97490,
#    below GD (0.99949) and Adam (0.99946); on the whole training set
#    they end at 1.00637, 1.11389. Full data minus floor, mixed runs: 6.89e-03
#    to 1.14e-01 (GD -3.33e-05, Adam -9.18e-05). Diverged seeds:
#    GD 0/1, GD+GradReg 0/1, GD+Newton 0/1, Adam 0/1, Adam+GradReg 0/1, Adam+Newton
#    0/1
