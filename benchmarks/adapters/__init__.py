"""One adapter per library. Each runs in its own process (see :mod:`benchmarks.worker`).

An adapter module defines ``REQUIRES`` (the import names it needs) and ``TASKS``, a dict
from task name to ``fn(ctx) -> dict``. Tasks use the library's public API as documented and
return seconds, which :mod:`benchmarks.worker` divides by ``G`` (one full-data gradient
measured in the same process). The helpers here are shared: deterministic probe vectors,
eigenvalue ladders and trace estimates scored against the float64 reference.
"""

from __future__ import annotations

import copy
import importlib
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..measure import Timer, flop_count, relative_error
from ..workloads import Workload

__all__ = ["ADAPTERS", "Context", "load", "available"]

#: adapter name -> module
ADAPTERS = {
    "curvlab": "benchmarks.adapters.curvlab",
    "pyhessian": "benchmarks.adapters.pyhessian",
    "curvlinops": "benchmarks.adapters.curvlinops",
    "hessian_eigenthings": "benchmarks.adapters.eigenthings",
    "torch_optimizer": "benchmarks.adapters.torch_optimizer",
    "backpack": "benchmarks.adapters.backpack",
}


def load(name: str):
    """The adapter module ``name``."""
    if name not in ADAPTERS:
        raise ValueError(f"unknown adapter {name!r}; choose from {sorted(ADAPTERS)}.")
    return importlib.import_module(ADAPTERS[name])


def available(name: str) -> bool:
    """Whether every package adapter ``name`` needs can be imported."""
    mod = load(name)
    for req in mod.REQUIRES:
        try:
            importlib.import_module(req)
        except Exception:  # noqa: BLE001 - a broken install counts as absent
            return False
    return True


@dataclass
class Context:
    """What a task gets: the workload, the run's settings, a timer and the unit G."""

    workload: Workload
    config: dict
    timer: Timer
    G: float
    reference: dict | None = None
    notes: list[str] = field(default_factory=list)
    gradient_flops: int | None = field(default=None, repr=False)

    @property
    def device(self) -> torch.device:
        return self.workload.device

    @property
    def n(self) -> int:
        return self.workload.num_params

    def vector(self, k: int | None = None, seed: int = 0) -> torch.Tensor:
        """A deterministic Gaussian vector ``(n,)`` or block ``(n, k)`` on the device."""
        gen = torch.Generator().manual_seed(seed)
        shape = (self.n,) if k is None else (self.n, k)
        return torch.randn(shape, generator=gen, dtype=torch.float64).to(
            device=self.device, dtype=self.workload.dtype
        )

    def split(self, v: torch.Tensor) -> list[torch.Tensor]:
        """A flat vector as a list of tensors shaped like the parameters."""
        out, i = [], 0
        for p in self.workload.params:
            out.append(v[i : i + p.numel()].reshape(p.shape))
            i += p.numel()
        return out

    def G_ratio(self, seconds: float) -> float:
        """``seconds`` over the G measured when the process started."""
        return seconds / self.G

    def flop_G(self, fn: Callable[[], object]) -> float | None:
        """The FLOP floor of ``fn`` in G: its matmul/conv FLOPs over one full-data
        gradient's (``torch.utils.flop_counter``; one untimed call each)."""
        from ..workloads import gradient

        if self.gradient_flops is None:
            self.gradient_flops = flop_count(lambda: gradient(self.workload))
        g, f = self.gradient_flops, flop_count(fn)
        return f / g if g and f is not None else None

    def cost(self, fn: Callable[[], object]) -> dict:
        """``{"G": measured cost in G, "flop_G": FLOP floor in G}`` of one call of ``fn``."""
        return {"G": self.in_G(fn), "flop_G": self.flop_G(fn)}

    def _G_samples(self, n: int) -> list[float]:
        from ..workloads import gradient

        return [self.timer.once(lambda: gradient(self.workload))[0] for _ in range(n)]

    def once(self, fn: Callable[[], object]) -> tuple[float, object]:
        """One call of ``fn`` (a solver run), in units of G measured just before and just
        after it (3 gradients each side): a drift in the machine's speed during a long run
        of tasks does not shift the ratio. Returns ``(ratio, result)``."""
        before = self._G_samples(3)
        sec, out = self.timer.once(fn)
        return sec / statistics.median(before + self._G_samples(3)), out

    def in_G(self, fn: Callable[[], object]) -> float:
        """Median time of ``fn`` over the median time of a gradient, the two timed
        round-robin (one call of each per round)."""
        from ..workloads import gradient

        sec = self.timer.interleaved({"G": lambda: gradient(self.workload), "fn": fn})
        return sec["fn"] / sec["G"]

    # -- eigenvalues -------------------------------------------------------------------
    def eig_error(self, eigenvalues, k: int) -> float | None:
        """Largest relative error of the ``k`` returned eigenvalues, sorted descending,
        against the reference's ``k`` largest algebraic ones."""
        if self.reference is None:
            return None
        ref = self.reference["top_eigenvalues"][:k]
        est = sorted((float(x) for x in eigenvalues), reverse=True)[:k]
        if len(est) < k:
            return float("inf")
        return max(relative_error(e, r) for e, r in zip(est, ref))

    def seeds(self) -> list[int]:
        """The seeds every eigenvalue setting runs over (``seeds``, 5 by default)."""
        return list(range(int(self.config.get("seeds", 5))))

    def eig_run(
        self, label: str, k: int, fn: Callable[[int], tuple[list[float], int]], *, default=False
    ) -> dict:
        """Run ``fn(seed)`` (which returns eigenvalues and its number of products) once per
        seed, time each run in G and score it. Reports the median and the range over the
        seeds; the setting ``reached`` the target when every seed's error is within it."""
        target = float(self.config.get("target_error", 1e-4))
        per_seed = []
        for seed in self.seeds():
            r, (vals, mv) = self.once(lambda seed=seed: fn(seed))
            err = self.eig_error(vals, k)
            per_seed.append(
                {
                    "seed": seed,
                    "G": r,
                    "matvecs": mv,
                    "error": err,
                    "eigenvalues": sorted((float(x) for x in vals), reverse=True)[:k],
                }
            )
        errs = [p["error"] for p in per_seed]
        known = None not in errs
        out = {"label": label, "default": default, "seeds": per_seed}
        for key, vals in (
            ("G", [p["G"] for p in per_seed]),
            ("matvecs", [p["matvecs"] for p in per_seed]),
        ):
            vals = [v for v in vals if v is not None]
            out[key] = statistics.median(vals) if vals else None
            out[f"{key}_range"] = [min(vals), max(vals)] if vals else None
        out["error"] = statistics.median(errs) if known else None
        out["error_max"] = max(errs) if known else None
        out["reached"] = known and max(errs) <= target
        return out

    def ladder(
        self, k: int, entries: list[tuple[str, bool, Callable]], always: tuple | list = ()
    ) -> dict:
        """Run ``(label, is_default, fn)`` entries (cheapest first; ``fn(seed)``) until one
        reaches the target error on every seed; defaults always run. Stops after
        ``ladder_budget_G`` units of G. Reports the fastest setting (median time over the
        seeds) that reached the target. Labels in ``always`` run like the defaults."""
        budget = float(self.config.get("ladder_budget_G", 5000.0))
        spent, runs, reached = 0.0, [], None
        for label, is_default, fn in entries:
            must = is_default or label in always
            if reached is not None and not must:
                continue
            if spent > budget and not must:
                runs.append({"label": label, "skipped": f"ladder budget {budget:g} G spent"})
                continue
            try:
                r = self.eig_run(label, k, fn, default=is_default)
            except Exception as err:  # noqa: BLE001 - a failing setting is a result too
                runs.append({"label": label, "default": is_default, "failed": repr(err)[:300]})
                continue
            spent += sum(p["G"] for p in r["seeds"])
            runs.append(r)
            if r["reached"] and reached is None:
                reached = r
        # the fastest of the runs that reached the target (a library's default may be
        # faster than a looser setting tried before it)
        ok = [r for r in runs if r.get("reached")]
        fastest = min(ok, key=lambda r: r["G"]) if ok else None
        return {
            "k": k,
            "seeds": self.seeds(),
            "runs": runs,
            "fastest_reaching": None if fastest is None else fastest["label"],
            "fastest_G": None if fastest is None else fastest["G"],
        }

    # -- memory ------------------------------------------------------------------------
    def product_memory(self, product: Callable[[], object]) -> dict:
        """Peak memory of ``product()`` (one HVP) against one full-data gradient's."""
        from ..measure import peak_memory
        from ..workloads import gradient

        g = peak_memory(lambda: gradient(self.workload), self.device)
        m = peak_memory(product, self.device)
        return {
            "gradient_bytes": g,
            "hvp_bytes": m,
            "hvp_over_gradient": m / g if g and m is not None else None,
        }

    # -- diagonal ----------------------------------------------------------------------
    def diagonal_runs(self, methods: dict[str, Callable[[], torch.Tensor]]) -> dict:
        """Time each diagonal estimator ``fn() -> (n,) estimate`` once and score it (relative
        2-norm error) against the exact diagonal of the reference, when it has one."""
        m = int(self.config.get("trace_matvecs", 30))
        ref = self.reference
        exact = None
        if ref is not None and ref.get("diag_file"):
            exact = torch.load(ref["diag_file"], weights_only=True).to(torch.float64)
        out: dict = {"matvecs": m}
        for label, fn in methods.items():
            ratio, est = self.once(fn)
            row = {"G": ratio}
            if exact is not None:
                e = est.detach().to("cpu", torch.float64)
                row["relative_error"] = float((e - exact).norm() / exact.norm())
            out[label] = row
        return out

    # -- trace -------------------------------------------------------------------------
    def trace_runs(self, methods: dict[str, Callable[[int], float]]) -> dict:
        """Run each trace estimator ``fn(seed) -> estimate`` over the configured seeds at
        the configured budget of products; score against the exact trace."""
        m = int(self.config.get("trace_matvecs", 30))
        seeds = list(range(int(self.config.get("trace_seeds", 3))))
        exact = None if self.reference is None else self.reference.get("trace")
        out = {}
        for label, fn in methods.items():
            try:
                times, ests = [], []
                for s in seeds:
                    t, est = self.once(lambda s=s, fn=fn: fn(s))
                    times.append(t)
                    ests.append(float(est))
                errs = None if exact is None else [relative_error(e, exact) for e in ests]
                out[label] = {
                    "estimates": ests,
                    "errors": errs,
                    "median_error": None if errs is None else statistics.median(errs),
                    "G": statistics.median(times),
                }
            except Exception as err:  # noqa: BLE001
                out[label] = {"failed": repr(err)[:300]}
        return {"matvecs": m, "exact": exact, "methods": out}


def seeded(seed: int):
    """Seed torch's global RNG (for peers whose estimators draw from it) for one call."""
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


# -- optimizer steps -----------------------------------------------------------------------
def optimizer_repeats(ctx: Context) -> int:
    """Rounds of optimizer-step timing: steps are cheap and their ratios small, so at
    least 15 (``optimizer_repeats`` overrides)."""
    return int(ctx.config.get("optimizer_repeats", max(15, int(ctx.config.get("repeats", 3)))))


def step_closure(ctx: Context, model):
    """The loss of ``model`` on the workload's first batch (one optimizer step's data)."""
    X, y = ctx.workload.batches[0]
    loss_fn = ctx.workload.loss_fn
    return lambda: loss_fn(model(X), y)


def copy_model(ctx: Context):
    """An independent copy of the workload's model (optimizer steps change parameters)."""
    return copy.deepcopy(ctx.workload.model)


def sgd_step(ctx: Context, model) -> Callable[[], None]:
    """Forward, backward and an SGD update on one batch: the unit of optimizer-step ratios."""
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    closure = step_closure(ctx, model)

    def step():
        opt.zero_grad()
        closure().backward()
        opt.step()

    return step
