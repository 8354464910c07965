"""Progress reports: the one policy for long-running work (estimators, landscapes).

``progress`` is ``False`` (silent, the estimators' default), ``True`` (a tqdm bar on a terminal;
in a log file or a notebook without a terminal, plain lines at most every 10 s and one at the
end of work that took longer, never carriage returns) or a callable
``progress(done, total, info)`` called after every iteration with the work done so far
(``total`` may be ``None``) and a dict of what the estimator knows then. Nothing here
synchronizes with the device: the counts are Python ints.

``callback`` (the second policy, for logging to one's own tools and stopping early) is ``None`` or
a callable ``callback(iterate)`` receiving an :class:`Iterate` after every iteration: the
products so far, the current estimate and residual (device tensors, not synchronized: call
``.item()`` or ``.tolist()`` if you want numbers). Returning ``True`` stops the estimator after
that iteration; its result then says it was stopped (``converged=False`` where it has that
field).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Callback",
    "Iterate",
    "Progress",
    "check_callback",
    "check_progress",
    "notify",
    "progress_bar",
]

Progress = bool | Callable[[int, int | None, dict], Any] | None


@dataclass(frozen=True)
class Iterate:
    """What an estimator knows after one iteration (passed to ``callback=``).

    Attributes
    ----------
    iteration : int
        Iterations done (1 after the first).
    products : int
        Operator products (matrix-vector products, one per column) so far.
    estimate : torch.Tensor or None
        The current estimate (eigenvalues, trace, diagonal, solution, ...), on the device.
    residual : torch.Tensor or None
        The current residual or error estimate, on the device (``None`` where there is none).
    info : dict
        Estimator-specific extras (documented by each estimator).
    """

    iteration: int
    products: int
    estimate: Any = None
    residual: Any = None
    info: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        def short(t):
            if t is None:
                return "None"
            shape = tuple(getattr(t, "shape", ()))
            return f"tensor{list(shape)}" if shape else "tensor[]"

        return (
            f"Iterate(iteration={self.iteration}, products={self.products}, "
            f"estimate={short(self.estimate)}, residual={short(self.residual)})"
        )


Callback = Callable[[Iterate], Any] | None


def check_progress(progress: Progress) -> Progress:
    """Validate ``progress=`` (``None``, a bool or a callable); returns it.

    Examples
    --------
    >>> check_progress(True)
    True
    """
    if not (progress is None or isinstance(progress, bool) or callable(progress)):
        raise TypeError(
            "progress must be True, False or a callable progress(done, total, info), got "
            f"{type(progress).__name__}."
        )
    return progress


def check_callback(callback: Callback) -> Callback:
    """Validate ``callback=`` (``None`` or a callable); returns it."""
    if callback is not None and not callable(callback):
        raise TypeError(
            f"callback must be None or a callable callback(iterate), got {type(callback).__name__}."
        )
    return callback


def notify(
    callback: Callback, iteration: int, products: int, estimate=None, residual=None, **info
) -> bool:
    """Call ``callback`` with an :class:`Iterate`; ``True`` when it asks the estimator to stop.

    Examples
    --------
    >>> notify(None, 1, 4)
    False
    >>> notify(lambda it: it.products >= 4, 1, 4)
    True
    """
    if callback is None:
        return False
    return callback(Iterate(iteration, products, estimate, residual, info)) is True


class _Silent:
    def update(self, n: int = 1, **info) -> None:
        pass

    def close(self) -> None:
        pass


class _Callback:
    def __init__(self, fn, total):
        self.fn, self.total, self.done = fn, total, 0

    def update(self, n: int = 1, **info) -> None:
        self.done += int(n)
        self.fn(self.done, self.total, info)

    def close(self) -> None:
        pass


class _Lines:
    """Line-based reports for non-terminal streams (CI logs, files)."""

    def __init__(self, total, desc, unit, every=10.0, stream=None):
        self.total, self.desc, self.unit, self.every = total, desc, unit, every
        self.stream = stream or sys.stderr
        self.done, self.t0 = 0, time.perf_counter()
        self.last = self.t0

    def _line(self) -> None:
        of = f"/{self.total}" if self.total is not None else ""
        el = time.perf_counter() - self.t0
        print(f"{self.desc}: {self.done}{of} {self.unit} ({el:.1f} s)", file=self.stream)

    def update(self, n: int = 1, **info) -> None:
        self.done += int(n)
        now = time.perf_counter()
        if now - self.last >= self.every:
            self.last = now
            self._line()

    def close(self) -> None:
        # a short piece of work stays silent in a log; a long one ends with its total
        if self.done and time.perf_counter() - self.t0 >= self.every:
            self._line()


class _Bar:
    def __init__(self, total, desc, unit):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc=desc, unit=f" {unit}", leave=False)

    def update(self, n: int = 1, **info) -> None:
        self.bar.update(int(n))
        if info:
            self.bar.set_postfix(
                {k: f"{v:.3g}" if isinstance(v, float) else v for k, v in info.items()},
                refresh=False,
            )

    def close(self) -> None:
        self.bar.close()


class progress_bar:
    """Context manager for a report under the policy above.

    Examples
    --------
    >>> seen = []
    >>> with progress_bar(lambda done, total, info: seen.append((done, total)), 3, "demo") as p:
    ...     for _ in range(3):
    ...         p.update(1)
    >>> seen
    [(1, 3), (2, 3), (3, 3)]
    """

    def __init__(self, progress: Progress, total: int | None, desc: str, unit: str = "it"):
        if progress is None or progress is False:
            self.impl = _Silent()
        elif callable(progress) and progress is not True:
            self.impl = _Callback(progress, total)
        elif progress is True:
            stream = sys.stderr
            tty = hasattr(stream, "isatty") and stream.isatty()
            self.impl = _Bar(total, desc, unit) if tty else _Lines(total, desc, unit)
        else:
            check_progress(progress)  # raises: not None, a bool or a callable

    def __enter__(self):
        return self.impl

    def __exit__(self, *exc) -> None:
        self.impl.close()
