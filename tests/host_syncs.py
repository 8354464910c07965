"""Counting host synchronizations on CPU (shared by the linalg and operator sync tests).

Every way a tensor's value reaches the host is patched (``item``, ``__bool__``, ``tolist``,
``cpu``, ``numpy``, ``__float__``, ``__int__``) and counted; on CUDA these are the calls that
wait for the device.
"""

from __future__ import annotations

import contextlib

import torch

METHODS = ("item", "__bool__", "tolist", "cpu", "numpy", "__float__", "__int__")


@contextlib.contextmanager
def count_syncs():
    """Yield a dict whose ``"n"`` counts the host transfers made inside the block."""
    counter = {"n": 0}
    saved = {m: getattr(torch.Tensor, m) for m in METHODS}

    def wrap(orig):
        def f(self, *a, **kw):
            counter["n"] += 1
            return orig(self, *a, **kw)

        return f

    try:
        for m, orig in saved.items():
            setattr(torch.Tensor, m, wrap(orig))
        yield counter
    finally:
        for m, f in saved.items():
            setattr(torch.Tensor, m, f)
