"""Helpers shared by study B's gallery pages (sphinx-gallery skips ``_common`` files).

The six optimizers of the study under one constructor, the study's search space and its
Optuna TPE tuning, the study's per-epoch cosine schedule, the original code's probe
distributions (for the pages' original modes), the summaries over seeds, and for the task
pages (B2, B3) their modes, the runs over settings and seeds, the summary table and the
curves figure.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch

from curvlab.optim import SADH, SSDH, SSVP, CurvatureOptimizer, Sophia

NAMES = ["SGD", "Adam", "Sophia-style", "SSDH", "SADH", "SSVP"]
CLIPPED = NAMES[2:]
#: the study's search box (uniform distributions), and which optimizer tunes what
SPACE = {"lr": (5e-4, 0.8), "rho": (1e-4, 0.5), "beta2": (0.985, 0.9999)}
TUNED = {
    "SGD": ("lr",),
    "Adam": ("lr", "beta2"),
    **{name: ("lr", "rho", "beta2") for name in CLIPPED},
}
#: the study's names of the optimizers (keys of its published configurations)
STUDY_KEY = {
    "SGD": "sgdm",
    "Adam": "adam",
    "Sophia-style": "sophia",
    "SSDH": "ssdh",
    "SADH": "sadh",
    "SSVP": "ssvp",
}
#: the seeds the original's scripts list (the pages' original modes)
ORIGINAL_SEEDS = [10100202, 111011, 110111, 1010]
COLORS = dict(zip(NAMES, plt.cm.tab10.colors))


def env_flag(name: str) -> bool:
    return os.environ.get(name, "0") == "1"


def line_style(name: str) -> str:
    """Dashed for the first-order baselines (SGD, Adam), solid for the curvature rules."""
    return "--" if name in ("SGD", "Adam") else "-"


@dataclass(frozen=True)
class TaskMode:
    """The modes of a task page (B2, B3), read from the environment by :func:`task_mode`."""

    original: bool  # CURVLAB_ORIGINAL: the full size at the published settings, its probes
    full: bool  # CURVLAB_FULL (or the original mode): the published size
    smoke: bool  # CURVLAB_SMOKE: a few steps, for the test suite
    tune_trials: int  # 0: no tuning (only at full size, not in the original mode)
    tune_epochs: int
    device: str
    probes: str  # "original" or "curvlab" (make_optimizer's probes=)
    threads: int  # the intra-op threads at the start, for the page to restore at its end


def task_mode(tune_epochs: int) -> TaskMode:
    """The modes of a task page; ``B_TUNE_TRIALS`` (20) and ``B_TUNE_EPOCHS``
    (``tune_epochs``) set the tuning at full size. Below full size it sets one intra-op
    thread (the tensors are small: as fast, and the numbers do not depend on the cores)."""
    original = env_flag("CURVLAB_ORIGINAL")
    full = env_flag("CURVLAB_FULL") or original
    threads = torch.get_num_threads()
    if not full:
        torch.set_num_threads(1)
    return TaskMode(
        original=original,
        full=full,
        smoke=env_flag("CURVLAB_SMOKE"),
        tune_trials=int(os.environ.get("B_TUNE_TRIALS", "20")) if full and not original else 0,
        tune_epochs=int(os.environ.get("B_TUNE_EPOCHS", str(tune_epochs))),
        device="cuda" if full and torch.cuda.is_available() else "cpu",
        probes="original" if original else "curvlab",
        threads=threads,
    )


# The original code's probes, for the original modes. Its SSDH and SADH drew "Rademacher"
# probes with randint_like(p, 0, 1) * 2 - 1, which is always -1, so their "diagonal" was
# z * (H z) = H 1 (the row sums); its Sophia drew Gaussian probes (its default). Both
# replace the curvature sample of curvlab's optimizers (the hook the optimizers define);
# curvlab's own draw Rademacher probes from the seeded generator.
def _row_sums(self, ctx):
    ones = [-torch.ones_like(p) for p in ctx.params]
    return [z * hz for z, hz in zip(ones, ctx.hvp(ctx.params, ones))]


class RowSumSSDH(SSDH):
    """SSDH with the original code's probe (always -1): the row sums ``H 1``."""

    _sample = _row_sums


class RowSumSADH(SADH):
    """SADH with the original code's probe (always -1): the row sums ``H 1``."""

    _sample = _row_sums


class GaussianSophia(Sophia):
    """Sophia-H with Gaussian probes ``z ~ N(0, I)`` (the original code's default)."""

    def _prepare(self, ctx):
        if not self._refresh():
            return None
        ctx.require_graph("Sophia-style")
        g = self._generator
        zs = [
            torch.randn(p.shape, generator=g, device=g.device, dtype=p.dtype).to(p.device)
            for p in ctx.params
        ]
        return [z * hz for z, hz in zip(zs, ctx.hvp(ctx.params, zs))]


def make_optimizer(
    name: str,
    params,
    lr: float,
    rho: float | None = None,
    beta2: float | None = None,
    *,
    seed: int = 0,
    probes: str = "curvlab",
    update_each: int = 10,
    max_grad_norm: float | None = None,
) -> torch.optim.Optimizer:
    """One of the study's six optimizers (beta1 = SGD momentum = 0.9, no weight decay).

    ``probes="original"`` gives the original code's probes (row sums for SSDH and SADH,
    Gaussian for Sophia-style); ``"curvlab"`` curvlab's Rademacher probes.
    ``max_grad_norm`` clips the gradient of curvlab's optimizers (for SGD and Adam,
    :func:`run_epochs` clips it).
    """
    params = list(params)
    if name == "SGD":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    beta2 = 0.99 if beta2 is None else beta2
    if name == "Adam":
        return torch.optim.Adam(params, lr=lr, betas=(0.9, beta2))
    common = dict(
        betas=(0.9, beta2),
        update_each=update_each,
        seed=seed,
        weight_decay=0.0,
        max_grad_norm=max_grad_norm,
    )
    original = probes == "original"
    if name == "Sophia-style":
        # the study's clip(m / max(h, eps), rho) * lr is curvlab's
        # clip(m / max(rho h, rho eps), 1) * (lr rho)
        cls = GaussianSophia if original else Sophia
        return cls(params, lr=lr * rho, rho=rho, eps=1e-12 * rho, **common)
    cls = {
        "SSDH": RowSumSSDH if original else SSDH,
        "SADH": RowSumSADH if original else SADH,
        "SSVP": SSVP,
    }[name]
    return cls(params, lr=lr, rho=rho, **common)


def cosine_schedule(opt: torch.optim.Optimizer, epochs: int):
    """The study's schedule: cosine over ``epochs + 1`` epochs down to a tenth of the rate,
    stepped once per epoch."""
    lr = opt.param_groups[0]["lr"]
    return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs + 1, eta_min=0.1 * lr)


def tune(
    name: str,
    objective: Callable[[dict], float],
    n_trials: int,
    *,
    seed: int = 0,
    space: dict | None = None,
) -> tuple[dict, float]:
    """Optuna's TPE sampler (seeded) over the study's box for ``name``; the parameters the
    optimizer tunes (``TUNED``), ``objective(params) -> value`` minimized; returns the best
    parameters (``rho`` and ``beta2`` ``None`` where not tuned) and the best value."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = SPACE if space is None else space
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(5, n_trials))
    study = optuna.create_study(direction="minimize", sampler=sampler)

    def run(trial):
        params = {k: trial.suggest_float(k, *space[k]) for k in TUNED[name]}
        value = float(objective({"rho": None, "beta2": None, **params}))
        return value if math.isfinite(value) else 1e6

    study.optimize(run, n_trials=n_trials)
    return {"rho": None, "beta2": None, **study.best_params}, float(study.best_value)


def geo_summary(values: Sequence[float]) -> tuple[float, float, float]:
    """Geometric mean, minimum and maximum (of positive values spanning decades)."""
    v = np.asarray(values, dtype=float)
    with np.errstate(divide="ignore"):
        g = float(np.exp(np.mean(np.log(np.clip(v, 1e-300, None))))) if np.all(v > 0) else 0.0
    return g, float(v.min()), float(v.max())


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    v = np.asarray(values, dtype=float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def fmt(x: float | None, spec: str = ".3g") -> str:
    return "-" if x is None else format(x, spec)


def run_epochs(
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    epochs: int,
    batches: Callable[[int], Iterable],
    loss_of: Callable,
    evaluate: Callable[[], dict],
    *,
    max_grad_norm: float | None = None,
) -> dict:
    """Train ``epochs`` epochs with the study's cosine schedule; ``batches(epoch)`` yields the
    batches, ``loss_of(batch)`` is the loss (with its graph), ``evaluate()`` the metrics
    after each epoch (a dict). Returns ``train`` (mean batch loss per epoch; ``inf`` once
    diverged), ``eval`` (one dict per epoch) and ``clip`` (mean clip rate per epoch, NaN for
    SGD and Adam). Curvlab's optimizers take a closure (they clip the gradient themselves
    through ``max_grad_norm``); SGD and Adam take a plain backward, then the clip."""
    sched = cosine_schedule(opt, epochs)
    curv = isinstance(opt, CurvatureOptimizer)
    out = {"train": [], "eval": [], "clip": []}
    for epoch in range(epochs):
        model.train()
        total, count, clips = 0.0, 0, []
        for batch in batches(epoch):
            if curv:
                loss = opt.step(lambda batch=batch: loss_of(batch))
                clips.append(opt.clip_rate())
            else:
                opt.zero_grad(set_to_none=True)
                loss = loss_of(batch)
                loss.backward()
                if max_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
                opt.step()
            total += float(loss.detach())
            count += 1
        sched.step()
        mean = total / max(count, 1)
        out["train"].append(mean if math.isfinite(mean) else math.inf)
        out["clip"].append(float(np.mean(clips)) if clips else math.nan)
        model.eval()
        with torch.no_grad():
            out["eval"].append(evaluate())
        if not math.isfinite(mean):
            break
    return out


# The task pages (B2, B3): ``run(name, (lr, rho, beta2), seed, epochs)`` is a page's one run
# (a :func:`run_epochs` record); ``settings`` maps a label ("published", "tuned here") to a
# table {optimizer: (lr, rho, beta2)}.
def tune_settings(run: Callable, trials: int, epochs: int) -> dict:
    """Every optimizer tuned with :func:`tune` (seed 0), a trial being ``run`` with seed 0
    for ``epochs`` epochs scored by the log of its last epoch's mean training loss (as on
    page B1); returns the table {optimizer: (lr, rho, beta2)}."""
    tuned = {}
    for name in NAMES:

        def objective(hp, name=name):
            last = run(name, (hp["lr"], hp["rho"], hp["beta2"]), 0, epochs)["train"][-1]
            return math.log(max(last, 1e-300))

        hp, _ = tune(name, objective, trials)
        tuned[name] = (hp["lr"], hp["rho"], hp["beta2"])
    print(f"tuning: {trials} TPE trials of {epochs} epochs per optimizer")
    return tuned


def run_seeds(run: Callable, settings: dict, seeds: Sequence[int], epochs: int) -> dict:
    """``runs[name, label]``: the records of ``run`` for every seed."""
    return {
        (name, label): [run(name, table[name], seed, epochs) for seed in seeds]
        for label, table in settings.items()
        for name in NAMES
    }


def summary_table(
    runs: dict, settings: dict, epochs: int, metric: str, column: str, specs: tuple[str, str]
) -> dict:
    """Print the last epoch's training loss and ``metric`` (a key of the eval records, headed
    ``column``, printed with the format ``specs`` for the mean and the sd): mean and sample
    standard deviation over the seeds. Returns ``summary[name, label] = ((train mean, sd),
    (metric mean, sd))``."""
    seeds = len(next(iter(runs.values())))
    w_mean, w_sd = (spec.split(".")[0] for spec in specs)
    print(f"\n{epochs} epochs, {seeds} seeds: mean and standard deviation over the seeds")
    print(
        f"{'optimizer':13s} {'setting':11s} {'lr':>7s} {'rho':>7s} {'train loss':>10s} {'sd':>7s}"
        f" {column:>{w_mean}s} {'sd':>{w_sd}s}"
    )
    summary = {}
    for (name, label), rs in runs.items():
        lr, rho, _ = settings[label][name]
        tr = mean_sd([r["train"][-1] for r in rs])
        m = mean_sd([r["eval"][-1][metric] for r in rs])
        summary[name, label] = (tr, m)
        print(
            f"{name:13s} {label:11s} {lr:7.3g} {fmt(rho):>7s} {tr[0]:10.4f} {tr[1]:7.4f}"
            f" {m[0]:{specs[0]}} {m[1]:{specs[1]}}"
        )
    return summary


def plot_band(ax, x, curves: np.ndarray, name: str, *, geometric: bool = False, **kw) -> None:
    """``curves`` (seeds x points) of optimizer ``name``: the band from the smallest to the
    largest and the mean (geometric with ``geometric``) in the optimizer's colour and style."""
    mean = np.exp(np.log(curves).mean(0)) if geometric else curves.mean(0)
    ax.fill_between(x, curves.min(0), curves.max(0), color=COLORS[name], alpha=0.2, lw=0)
    ax.plot(x, mean, color=COLORS[name], ls=line_style(name), label=name, **kw)


def curves_figure(
    runs: dict,
    metric: str,
    ylabels: tuple[str, str],
    logy: tuple[bool, bool],
    best: tuple[float, float] | None = None,
):
    """The published settings' training loss and ``metric`` per epoch (the mean over the
    seeds, the band from the smallest to the largest), with dotted lines at ``best`` (the
    lowest possible values) if given."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name in NAMES:
        rs = runs[name, "published"]
        n = min(len(r["train"]) for r in rs)
        epochs = np.arange(1, n + 1)
        plot_band(axes[0], epochs, np.array([r["train"][:n] for r in rs]), name, marker=".")
        curves = np.array([[e[metric] for e in r["eval"][:n]] for r in rs])
        plot_band(axes[1], epochs, curves, name, marker=".")
    if best is not None:
        axes[0].axhline(best[0], color="k", ls=":", lw=1)
        axes[1].axhline(best[1], color="k", ls=":", lw=1, label="best possible")
    for ax, ylabel, log in zip(axes, ylabels, logy):
        ax.set_ylabel(ylabel)
        ax.set_xlabel("epoch")
        if log:
            ax.set_yscale("log")
    axes[1].legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle("published settings", fontsize="medium")
    fig.tight_layout()
    return fig
