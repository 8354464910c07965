r"""Curvature during training: the top eigenvalues, the trace and spectral bias every N steps.

:class:`CurvatureTracker` measures, every ``every`` steps, on fixed data (one batch or a
re-iterable of batches, as the operators take it), the top-``k`` eigenvalues of the Hessian (or
the Gauss-Newton matrix) with :func:`curvlab.eigsh`, optionally the trace
(:func:`curvlab.trace`, Hutch++) and a spectral-bias metric (a
:class:`curvlab.fourier.SpectralBiasTracker`), and keeps the history as a list of frozen
:class:`CurvatureRecord` (plain Python numbers: no device memory is held, no pandas needed;
:meth:`CurvatureTracker.to_dataframe` converts it when pandas is installed).

Each record builds the operator afresh (the parameters changed) and warm-starts ``eigsh``
from the previous record's eigenvectors (their sum as the start vector: a Krylov space grown
from a combination of ``k`` near-eigenvectors holds good approximations of all of them). The
eigenvectors turn little between records, so a warm refresh needs fewer products than a cold
one, but not "a few": on a 64-32-10 tanh MLP on 512 digits (float64, SGD lr 0.1, ``tol=1e-4``)
a refresh every step took 9 to 12 products against 17 or 18 cold (377 against 712 over 40
steps), a refresh every 5 steps 11 to 13 against 17 to 21 (94 against 142), and for ``k=3``
every 5 steps 199 against 232. To reach a relative residual of ``1e-4`` the Lanczos process
has to shrink the start vector's error by orders of magnitude whatever the start; a warm start
saves the first few steps. ``record.warm`` and ``record.eig_matvecs`` say what each record cost.

Adapters for training loops:

- a hand-written loop calls ``tracker.update()`` once per step (and once before the first);
  :func:`track_training` is such a loop, for any optimizer;
- :class:`HFTrainerCallback` for the Hugging Face ``Trainer`` (needs ``transformers``);
- :class:`LightningCallback` for a Lightning ``Trainer`` (needs ``lightning``).

The two callback classes are defined when they are first asked for (``from curvlab.track
import HFTrainerCallback``), so that importing curvlab never imports transformers or Lightning;
without the package they raise an :class:`ImportError` that says what to install.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor, nn

from ._progress import Progress, check_progress
from ._public import public_dir
from ._random import Seed, draw_seed, make_generator
from .linalg import eigsh
from .linalg import trace as _trace
from .operators import GGNOperator, HessianOperator
from .risk import Output, _cast, _param_dtype_device, call_model, check_output, model_output

__all__ = ["CurvatureTracker", "CurvatureRecord", "track_training"]

_OPERATORS = {"hessian": HessianOperator, "ggn": GGNOperator}
#: eigsh settings of the tracker unless ``eigsh_kwargs`` says otherwise: a relative residual
#: of 1e-4 gives eigenvalues to about 1e-8 relative (the error is about residual^2 / gap), and
#: float32 products cannot reach eigsh's own default of 1e-6 (see the estimators guide); the
#: residual criterion keeps the eigenvectors accurate too (they are the next warm start)
_EIGSH_DEFAULTS = {"tol": 1e-4, "criterion": "residual"}


# -- records ---------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class CurvatureRecord:
    """One measurement of :class:`~curvlab.track.CurvatureTracker`, in plain Python numbers.

    Attributes
    ----------
    step : int
        Training step the record is labeled with.
    eigenvalues : tuple of float
        The top ``k`` eigenvalues in ascending order (the order of :func:`curvlab.eigsh`):
        ``eigenvalues[-1]`` is the largest (also :attr:`top`).
    residuals : tuple of float
        ``||A x - lambda x||`` of each eigenpair (an exact eigenvalue lies within it).
    loss : float
        The empirical risk on the tracker's data at this step.
    trace : float or None
        Hutch++ trace estimate (``None`` when the tracker does not estimate it).
    trace_stderr : float or None
        Its standard error.
    spectral_bias : Mapping or None
        ``{frequency: value}`` from the tracker's
        :class:`~curvlab.fourier.SpectralBiasTracker` (``None`` without one).
    num_matvecs : int
        Operator products of this record (eigenvalues and trace).
    eig_matvecs : int
        Products of the eigenvalue solve alone.
    converged : bool
        Whether every eigenpair met the tolerance.
    warm : bool
        Whether the solve was warm-started from the previous record's eigenvectors.
    seconds : float
        Wall-clock time of the record.
    seed : int
        Integer seed of this record's random draws (start block, trace probes).

    Examples
    --------
    >>> rec = CurvatureRecord(step=3, eigenvalues=(1.5, 2.0), residuals=(1e-5, 2e-5), loss=0.7,
    ...                       trace=None, trace_stderr=None, spectral_bias=None, num_matvecs=12,
    ...                       eig_matvecs=12, converged=True, warm=True, seconds=0.01, seed=0)
    >>> rec.top, rec.as_dict()["lambda_1"], rec.as_dict()["lambda_2"]
    (2.0, 2.0, 1.5)
    """

    step: int
    eigenvalues: tuple[float, ...]
    residuals: tuple[float, ...]
    loss: float
    trace: float | None
    trace_stderr: float | None
    spectral_bias: Mapping[Any, float] | None
    num_matvecs: int
    eig_matvecs: int
    converged: bool
    warm: bool
    seconds: float
    seed: int

    @property
    def top(self) -> float:
        """The largest tracked eigenvalue (``eigenvalues[-1]``)."""
        return self.eigenvalues[-1]

    def as_dict(self) -> dict[str, Any]:
        """A flat dict: ``lambda_1`` (the largest) .. ``lambda_k``, ``residual_1`` ..,
        ``spectral_bias_<freq>`` columns, and the scalar fields."""
        d: dict[str, Any] = {"step": self.step, "loss": self.loss}
        for i, (lam, res) in enumerate(zip(self.eigenvalues[::-1], self.residuals[::-1])):
            d[f"lambda_{i + 1}"] = lam
            d[f"residual_{i + 1}"] = res
        d["trace"] = self.trace
        d["trace_stderr"] = self.trace_stderr
        for f, v in (self.spectral_bias or {}).items():
            d[f"spectral_bias_{f:g}"] = v
        for name in ("num_matvecs", "eig_matvecs", "converged", "warm", "seconds", "seed"):
            d[name] = getattr(self, name)
        return d

    def __repr__(self) -> str:
        vals = ", ".join(f"{v:.6g}" for v in self.eigenvalues)
        extra = "" if self.trace is None else f", trace={self.trace:.4g}"
        if self.spectral_bias is not None:
            extra += f", spectral_bias={len(self.spectral_bias)} freqs"
        return (
            f"CurvatureRecord(step={self.step}, eigenvalues=[{vals}], loss={self.loss:.4g}"
            f"{extra}, num_matvecs={self.num_matvecs}, converged={self.converged}, "
            f"warm={self.warm})"
        )


def _is_one_batch(data) -> bool:
    """``(X, y)`` with a tensor ``y`` and inputs a tensor, a dict or a tuple of tensors."""
    if not (isinstance(data, tuple) and len(data) == 2 and isinstance(data[1], Tensor)):
        return False
    X = data[0]
    if isinstance(X, tuple | list):
        return all(isinstance(t, Tensor) for t in X)
    return isinstance(X, Tensor | Mapping)


def _positive_int(x, name: str) -> int:
    if isinstance(x, bool) or not isinstance(x, int) or x < 1:
        raise ValueError(f"{name} must be a positive int, got {x!r}.")
    return x


@contextmanager
def _eval_mode(model: nn.Module, on: bool):
    if not on:
        yield
        return
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


# -- the tracker -----------------------------------------------------------------------------
class CurvatureTracker:
    r"""Measure the top eigenvalues (and the trace, and spectral bias) every ``every`` steps.

    Call :meth:`update` once per training step, and once before the first step to record the
    initialization: the ``i``-th call (from 0) records when ``i % every == 0``, labeled step
    ``i`` (with ``step=`` given, it records when ``step % every == 0``), as
    :meth:`curvlab.fourier.SpectralBiasTracker.update` does. :attr:`history` holds the
    :class:`CurvatureRecord` list; :meth:`to_dataframe` and :meth:`plot` show it.

    Parameters
    ----------
    model
        The model being trained (the tracker reads its current parameters at each record).
    loss_fn
        ``loss_fn(output, target) -> scalar``, reduction ``"mean"`` or ``"sum"``.
    data
        Fixed data the curvature is measured on: one batch ``(X, y)`` or a re-iterable of
        batches (a list, a DataLoader without shuffling), as the operators take it.
    every
        Recording period, in calls of :meth:`update` (or in steps when ``step=`` is passed).
    k
        Number of top eigenvalues.
    trace
        Also estimate the trace (Hutch++, ``trace_samples`` products).
    trace_samples
        Products spent on the trace.
    spectral_bias
        A :class:`curvlab.fourier.SpectralBiasTracker` to record at every curvature record
        (its own :meth:`~curvlab.fourier.SpectralBiasTracker.result` holds the same records).
    operator
        ``"hessian"`` (:class:`curvlab.HessianOperator`) or ``"ggn"``
        (:class:`curvlab.GGNOperator`).
    params
        Parameter selection (see :func:`curvlab.params.select_params`).
    output
        How to get the loss's input from the model's return value (see
        :func:`curvlab.risk.model_output`).
    seed
        Seed of the random draws (int or :class:`torch.Generator`); each record draws its own
        integer seed from it and stores it.
    eval_mode
        Measure with the model in eval mode: the tracker calls ``model.eval()`` for the
        record and restores every module's mode afterwards. The usual choice inside a training
        loop whose model has dropout (in train mode the operators refuse non-deterministic
        models). ``False`` (default): the model's current mode, as everywhere in curvlab.
    warm_start
        Start each solve from the previous record's eigenvectors (default ``True``).
    eigsh_kwargs
        Further arguments of :func:`curvlab.eigsh` (``tol`` defaults to ``1e-4`` and
        ``criterion`` to ``"residual"`` here;
        ``check_multiplicity``, ``max_matvecs``, ``block_size``...). ``v0`` is the tracker's.
    operator_kwargs
        Further arguments of the operator (``mode``, ``batch_columns``, ``mc_samples``...).
    progress
        Progress of each record, which can take minutes on a large model: ``False``
        (default): silent. ``True``: a bar on a terminal (plain lines in a log) for the
        eigenvalue solve and the trace of every record; or a callable
        ``progress(done, total, info)``, passed to :func:`curvlab.eigsh` and
        :func:`curvlab.trace` (``eigsh_kwargs["progress"]`` overrides it for the solve).

    Notes
    -----
    The operator is built afresh at each record (the parameters changed); the data's
    determinism check (two passes) runs at the first record only. With ``k > 1`` eigsh's
    multiplicity check (on by default) adds a quarter of the products; pass
    ``eigsh_kwargs={"check_multiplicity": False}`` when the top eigenvalues are known to be
    simple. Products of a record are ``eig_matvecs`` (eigsh) plus ``trace_samples``; a record
    also evaluates the loss (one forward pass over ``data``).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from curvlab.track import CurvatureTracker
    >>> g = torch.Generator().manual_seed(0)
    >>> X, y = torch.randn(64, 4, generator=g), torch.randn(64, 1, generator=g)
    >>> model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    >>> tracker = CurvatureTracker(model, nn.MSELoss(), (X, y), every=5, seed=0)
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> for step in range(11):
    ...     _ = tracker.update()  # records at steps 0, 5 and 10
    ...     opt.zero_grad()
    ...     nn.functional.mse_loss(model(X), y).backward()
    ...     opt.step()
    >>> [r.step for r in tracker.history], [r.warm for r in tracker.history]
    ([0, 5, 10], [False, True, True])
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn,
        data: Iterable,
        *,
        every: int = 10,
        k: int = 1,
        trace: bool = False,
        trace_samples: int = 30,
        spectral_bias=None,
        operator: str = "hessian",
        params=None,
        output: Output = None,
        seed: Seed = None,
        eval_mode: bool = False,
        warm_start: bool = True,
        eigsh_kwargs: Mapping[str, Any] | None = None,
        operator_kwargs: Mapping[str, Any] | None = None,
        progress: Progress = False,
    ):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
        self.every = _positive_int(every, "every")
        self.k = _positive_int(k, "k")
        self.trace = bool(trace)
        self.trace_samples = _positive_int(trace_samples, "trace_samples")
        if operator not in _OPERATORS:
            raise ValueError(f"operator must be one of {tuple(_OPERATORS)}, got {operator!r}.")
        if spectral_bias is not None and not (
            hasattr(spectral_bias, "record") and hasattr(spectral_bias, "freqs")
        ):
            raise TypeError(
                "spectral_bias must be a curvlab.fourier.SpectralBiasTracker (or None), got "
                f"{type(spectral_bias).__name__}."
            )
        eigsh_kwargs = dict(eigsh_kwargs or {})
        if "v0" in eigsh_kwargs or "k" in eigsh_kwargs or "seed" in eigsh_kwargs:
            raise ValueError(
                "eigsh_kwargs may not set v0, k or seed: the tracker sets them (k=, seed=, "
                "warm_start=)."
            )
        self.model = model
        self.loss_fn = loss_fn
        self.data = [data] if _is_one_batch(data) else data
        self.spectral_bias = spectral_bias
        self.operator = operator
        self.params = params
        self.output = check_output(output)
        self.eval_mode = bool(eval_mode)
        self.warm_start = bool(warm_start)
        self.eigsh_kwargs = {**_EIGSH_DEFAULTS, **eigsh_kwargs}
        self.operator_kwargs = dict(operator_kwargs or {})
        self.progress = check_progress(progress)
        self._gen, self.seed = make_generator(seed)
        self.reset()

    def reset(self) -> None:
        """Forget the history, the warm-start vectors and the step counter."""
        self._calls = 0
        self._history: list[CurvatureRecord] = []
        self._vectors: Tensor | None = None
        self._checked = False

    # -- recording -------------------------------------------------------------------------
    @property
    def history(self) -> list[CurvatureRecord]:
        """The records so far, oldest first (a new list; the records are frozen)."""
        return list(self._history)

    @property
    def eigenvectors(self) -> Tensor | None:
        """The last record's eigenvectors ``(n, k)`` (the next warm start), or ``None``."""
        return self._vectors

    def update(self, step: int | None = None) -> bool:
        """Count one step and record if it is due; returns whether it recorded.

        With ``step=None`` the tracker counts calls (the first call is step 0); with ``step``
        given it records when ``step % every == 0``.
        """
        s = self._calls if step is None else int(step)
        due = s % self.every == 0
        if due:
            self.record(s)
        self._calls += 1
        return due

    __call__ = update

    def record(self, step: int | None = None) -> CurvatureRecord:
        """Measure now and append the record (labeled ``step``, default the call count)."""
        s = self._calls if step is None else int(step)
        t0 = time.perf_counter()
        rec_seed = draw_seed(self._gen)
        gen, _ = make_generator(rec_seed)
        with torch.enable_grad(), _eval_mode(self.model, self.eval_mode):
            op = _OPERATORS[self.operator](
                self.model,
                self.loss_fn,
                self.data,
                params=self.params,
                output=self.output,
                check_deterministic=not self._checked,
                **self.operator_kwargs,
            )
            self._checked = True
            v0 = None
            prev = self._vectors
            if self.warm_start and prev is not None and prev.shape[0] == op.shape[0]:
                b = self.eigsh_kwargs.get("block_size") or 1
                v0 = prev if prev.shape[1] <= b else prev.sum(dim=1)
            kwargs = {"progress": self.progress, **self.eigsh_kwargs}
            res = eigsh(op, k=self.k, seed=gen, v0=v0, **kwargs)
            matvecs = res.num_matvecs
            tr = tr_err = None
            if self.trace:
                t = _trace(op, num_matvecs=self.trace_samples, seed=gen, progress=self.progress)
                tr, tr_err, matvecs = t.estimate, t.std_error, matvecs + t.num_matvecs
            loss = float(op.risk.evaluate().loss)
            sb = None
            if self.spectral_bias is not None:
                vals = self.spectral_bias.record(self.model, step=s)
                freqs = torch.as_tensor(self.spectral_bias.freqs).reshape(-1).tolist()
                sb = MappingProxyType(dict(zip(freqs, vals.reshape(-1).tolist())))
        self._vectors = res.eigenvectors.detach()
        rec = CurvatureRecord(
            step=s,
            eigenvalues=tuple(res.eigenvalues.tolist()),
            residuals=tuple(res.residuals.tolist()),
            loss=loss,
            trace=tr,
            trace_stderr=tr_err,
            spectral_bias=sb,
            num_matvecs=matvecs,
            eig_matvecs=res.num_matvecs,
            converged=res.converged,
            warm=v0 is not None,
            seconds=time.perf_counter() - t0,
            seed=rec_seed,
        )
        self._history.append(rec)
        return rec

    # -- views -----------------------------------------------------------------------------
    def as_dicts(self) -> list[dict[str, Any]]:
        """The history as flat dicts (:meth:`CurvatureRecord.as_dict`), one per record."""
        return [r.as_dict() for r in self._history]

    def to_dataframe(self):
        """The history as a ``pandas.DataFrame``, one row per record (needs pandas).

        Raises
        ------
        ImportError
            When pandas is not installed (:meth:`as_dicts` gives the same rows as dicts).
        """
        try:
            import pandas as pd
        except ImportError as err:
            raise ImportError(
                "CurvatureTracker.to_dataframe needs pandas (pip install pandas); without it, "
                "tracker.history is the list of records and tracker.as_dicts() the rows as "
                "dicts."
            ) from err
        return pd.DataFrame(self.as_dicts())

    def plot(self, *, lr=None, ax=None, **kwargs):
        """Draw the history with :func:`curvlab.plot.curvature_history`; returns the Axes."""
        from .plot import curvature_history

        return curvature_history(self._history, lr=lr, ax=ax, **kwargs)

    def __repr__(self) -> str:
        return (
            f"CurvatureTracker(operator={self.operator!r}, k={self.k}, every={self.every}, "
            f"trace={self.trace}, records={len(self._history)}, seed={self.seed})"
        )


# -- a hand-written loop ---------------------------------------------------------------------
def track_training(
    tracker: CurvatureTracker,
    optimizer,
    train_data: Iterable,
    *,
    epochs: int = 1,
    max_steps: int | None = None,
) -> list[float]:
    """Train ``tracker.model`` with ``optimizer`` on ``train_data`` and track its curvature.

    The loop a hand-written training script has: for each batch ``(X, y)``,
    ``tracker.update(step)`` (so the record at step ``s`` is taken *before* the ``s``-th
    update of the parameters, step 0 being the initialization), then one optimizer step on
    ``tracker.loss_fn`` through :func:`curvlab.optim.step` (any ``torch.optim`` optimizer or
    a curvlab one). After the last step the tracker records once more if that step is due.

    Parameters
    ----------
    tracker
        The :class:`CurvatureTracker` (its model, loss and ``output=`` are used for training).
    optimizer
        A ``torch.optim.Optimizer`` over the model's parameters, or a curvlab optimizer.
    train_data
        Re-iterable of training batches ``(X, y)`` (a DataLoader may shuffle: only the
        tracker's own ``data`` must be fixed). Batches are moved to the model's device and
        floating-point dtype.
    epochs
        Passes over ``train_data``.
    max_steps
        Stop after this many optimizer steps (default: no limit).

    Returns
    -------
    list of float
        The training loss of each step (on its batch, before the step).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from curvlab.track import CurvatureTracker, track_training
    >>> g = torch.Generator().manual_seed(0)
    >>> X, y = torch.randn(32, 3, generator=g), torch.randn(32, 1, generator=g)
    >>> model = nn.Linear(3, 1)
    >>> tracker = CurvatureTracker(model, nn.MSELoss(), (X, y), every=2, seed=0)
    >>> losses = track_training(tracker, torch.optim.SGD(model.parameters(), lr=0.1),
    ...                         [(X, y)], epochs=4)
    >>> len(losses), [r.step for r in tracker.history]
    (4, [0, 2, 4])
    """
    from .optim import step as optim_step

    if not isinstance(tracker, CurvatureTracker):
        raise TypeError(f"tracker must be a CurvatureTracker, got {type(tracker).__name__}.")
    epochs = _positive_int(epochs, "epochs")
    if max_steps is not None:
        max_steps = _positive_int(max_steps, "max_steps")
    model, loss_fn, output = tracker.model, tracker.loss_fn, tracker.output
    dtype, device = _param_dtype_device(model)
    losses: list[float] = []
    step = 0
    for _ in range(epochs):
        for batch in train_data:
            if max_steps is not None and step >= max_steps:
                break
            if not isinstance(batch, tuple | list) or len(batch) != 2:
                raise TypeError("train_data must yield (X, y) batches.")
            X, y = batch
            if dtype is not None:
                X, y = _cast(X, device, dtype), _cast(y, device, dtype)

            def closure(X=X, y=y):
                return loss_fn(model_output(call_model(model, X), (X, y), output), y)

            tracker.update(step)
            losses.append(float(optim_step(optimizer, closure)))
            step += 1
    if step > 0:
        last = tracker.history[-1].step if tracker.history else None
        if step % tracker.every == 0 and last != step:
            tracker.record(step)
    return losses


# -- callbacks of training frameworks (defined on first use) ---------------------------------
def _check_tracker(tracker) -> None:
    if not isinstance(tracker, CurvatureTracker):
        raise TypeError(f"tracker must be a CurvatureTracker, got {type(tracker).__name__}.")


def _make_hf_callback():
    try:
        from transformers import TrainerCallback
    except ImportError as err:
        raise ImportError(
            "curvlab.track.HFTrainerCallback needs transformers: pip install 'curvlab[hf]' "
            "(or pip install transformers)."
        ) from err

    class HFTrainerCallback(TrainerCallback):
        """Track curvature inside a Hugging Face ``Trainer``: ``callbacks=[HFTrainerCallback(t)]``.

        At the start of training (``on_train_begin``) and after every optimizer step
        (``on_step_end``) it calls ``tracker.update(step=state.global_step)``, so records are
        labeled with the Trainer's global step and taken every ``tracker.every`` steps,
        step 0 (the initialization) included. The tracker must hold the model the Trainer
        trains; with dropout in the model create it with ``eval_mode=True``.

        Parameters
        ----------
        tracker
            A :class:`CurvatureTracker`.

        Examples
        --------
        >>> import torch
        >>> from torch import nn
        >>> from curvlab.track import CurvatureTracker, HFTrainerCallback
        >>> model = nn.Linear(3, 2)
        >>> cb = HFTrainerCallback(
        ...     CurvatureTracker(model, nn.CrossEntropyLoss(),
        ...                      (torch.randn(8, 3), torch.randint(0, 2, (8,)))))
        >>> type(cb).__mro__[1].__name__
        'TrainerCallback'
        """

        def __init__(self, tracker: CurvatureTracker):
            _check_tracker(tracker)
            self.tracker = tracker
            self._last: int | None = None

        def _update(self, state) -> None:
            step = int(state.global_step)
            if step != self._last:
                self._last = step
                self.tracker.update(step=step)

        def on_train_begin(self, args, state, control, **kwargs):
            """Record the initialization (or the resumed step) when due."""
            self._update(state)

        def on_step_end(self, args, state, control, **kwargs):
            """Record after an optimizer step when ``global_step`` is due."""
            self._update(state)

    HFTrainerCallback.__module__ = __name__
    HFTrainerCallback.__qualname__ = "HFTrainerCallback"
    return HFTrainerCallback


def _make_lightning_callback():
    try:
        from lightning.pytorch import Callback
    except ImportError:
        try:
            from pytorch_lightning import Callback
        except ImportError as err:
            raise ImportError(
                "curvlab.track.LightningCallback needs Lightning: pip install lightning."
            ) from err

    class LightningCallback(Callback):
        """Track curvature inside a Lightning ``Trainer``: ``callbacks=[LightningCallback(t)]``.

        At ``on_train_start`` and after every training batch (``on_train_batch_end``, after
        the optimizer step) it calls ``tracker.update(step=trainer.global_step)``; a step
        repeated under gradient accumulation is counted once. The tracker must hold the
        LightningModule (or the part of it being trained) and data on its device.

        Parameters
        ----------
        tracker
            A :class:`CurvatureTracker`.
        """

        def __init__(self, tracker: CurvatureTracker):
            _check_tracker(tracker)
            self.tracker = tracker
            self._last: int | None = None

        def _update(self, trainer) -> None:
            step = int(trainer.global_step)
            if step != self._last:
                self._last = step
                self.tracker.update(step=step)

        def on_train_start(self, trainer, pl_module):
            """Record the initialization (or the resumed step) when due."""
            self._update(trainer)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            """Record after an optimizer step when ``global_step`` is due."""
            self._update(trainer)

    LightningCallback.__module__ = __name__
    LightningCallback.__qualname__ = "LightningCallback"
    return LightningCallback


_LAZY = {"HFTrainerCallback": _make_hf_callback, "LightningCallback": _make_lightning_callback}


def __getattr__(name: str):
    if name in _LAZY:
        cls = _LAZY[name]()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__dir__ = public_dir(globals(), extra=_LAZY)
