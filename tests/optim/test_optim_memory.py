"""Memory flat over the steps (issue 16): 30 closure steps of the second-order optimizers on
the tiny BERT keep no autograd graph alive, and the live tensors do not grow.

Three measures, none of them timing:

- the tensors the forward graph saved for backward: the closure records its forward under
  :func:`torch.autograd.graph.saved_tensors_hooks` whose pack hook wraps each saved tensor in
  a weakly referenced box, so the number of live boxes is the number of saved tensors that a
  graph (the loss's, or a double-backward graph built on it) still holds. After every step it
  must be zero;
- the ``torch.Tensor`` objects :func:`gc.get_objects` sees (count and bytes) after steps 10
  and 30: equal within a small constant (the optimizer's state is allocated by then), and the
  resident set size (a loose bound, for memory torch holds outside Python objects);
- nothing in ``opt.state`` or ``p.grad`` requires grad or has a ``grad_fn``.

A deliberately bad variant (the closure appends each loss to a list without ``detach``) must
fail the same checks, so they can fail.
"""

from __future__ import annotations

import gc
import sys
import warnings
import weakref

import pytest
import torch

pytest.importorskip("transformers")

import hf_models  # noqa: E402

from curvlab.optim import AdaHessian, DampedNewton, NewtonCG, Sophia  # noqa: E402

STEPS, MIDDLE = 30, 10
#: the live tensors may differ by this many between steps 10 and 30 (none did when measured)
SLACK = 2
#: resident memory may grow by this much (MiB) between steps 10 and 30
RSS_MIB = 16

OPTIMIZERS = {
    "adahessian": lambda ps: AdaHessian(ps, lr=0.05, seed=0),
    "sophia-h": lambda ps: Sophia(ps, lr=5e-3, estimator="hutchinson", update_each=1, seed=0),
    "newtoncg": lambda ps: NewtonCG(ps),
    "dampednewton": lambda ps: DampedNewton(ps, cg_max_iter=10),
}


class _Box:
    """One tensor saved for backward, as the pack hook stores it."""

    __slots__ = ("tensor", "nbytes", "__weakref__")

    def __init__(self, tensor: torch.Tensor):
        self.tensor = tensor
        self.nbytes = tensor.numel() * tensor.element_size()


class SavedTensors:
    """Counts the tensors saved for backward by the forwards recorded in ``with self:`` that
    are still held by a graph."""

    def __init__(self):
        self.live: weakref.WeakSet[_Box] = weakref.WeakSet()

    def _pack(self, t: torch.Tensor) -> _Box:
        # detached: a saved output would otherwise hold its own grad_fn, a reference cycle
        # through C++ that gc cannot break (autograd restores the graph edge on unpacking)
        box = _Box(t.detach())
        self.live.add(box)
        return box

    @staticmethod
    def _unpack(box: _Box) -> torch.Tensor:
        return box.tensor

    def __enter__(self):
        self._ctx = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)

    def count(self) -> tuple[int, int]:
        gc.collect()
        return len(self.live), sum(b.nbytes for b in list(self.live))


def live_tensors() -> tuple[int, int]:
    """Number and bytes of the ``torch.Tensor`` objects the garbage collector sees."""
    gc.collect()
    n = nbytes = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # isinstance on lazy modules' proxies warns
        objects = gc.get_objects()
    for obj in objects:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tensor = isinstance(obj, torch.Tensor)
            if tensor:
                n += 1
                nbytes += obj.numel() * obj.element_size()
        except Exception:  # pragma: no cover - objects that refuse isinstance
            continue
    return n, nbytes


def rss_mib() -> float:
    """The resident set size now (not the peak), in MiB; Linux only (else 0)."""
    if not sys.platform.startswith("linux"):
        return 0.0
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def batch():
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(1, 40, (8, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[:4, 9:] = 0
    return ids, mask, torch.randint(0, 3, (8,), generator=g)


def train(make, steps=STEPS, keep: list | None = None) -> dict:
    """Run ``steps`` closure steps and measure; ``keep`` (the bad variant) receives every
    loss with its graph."""
    model = hf_models.tiny_bert()
    opt = make(model.parameters())
    ids, mask, labels = batch()
    saved = SavedTensors()

    def closure():
        with saved:
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        if keep is not None:
            keep.append(loss)
        return loss

    m: dict = {"saved": [], "losses": []}
    for step in range(1, steps + 1):
        m["losses"].append(float(opt.step(closure)))
        m["saved"].append(saved.count())
        if step in (MIDDLE, steps):
            m[step] = live_tensors()
            m[f"rss{step}"] = rss_mib()
    m["state"] = [
        (name, t)
        for s in opt.state.values()
        for name, t in s.items()
        if isinstance(t, torch.Tensor)
    ] + [("grad", p.grad) for p in model.parameters() if p.grad is not None]
    return m


def assert_flat(m: dict, steps=STEPS) -> None:
    held = [c for c, _ in m["saved"]]
    assert held == [0] * steps, f"saved tensors still held by a graph after each step: {held}"
    (n10, b10), (n30, b30) = m[MIDDLE], m[steps]
    assert n30 - n10 <= SLACK, f"live tensors grew from {n10} to {n30}"
    assert b30 - b10 <= SLACK * 4096, f"live tensor bytes grew from {b10} to {b30}"
    # a loose bound on the memory torch allocates outside Python objects (measured: under
    # 1 MiB for every optimizer; the bad variant below grows by about 4.5 MiB)
    assert m[f"rss{steps}"] - m[f"rss{MIDDLE}"] < RSS_MIB, "resident memory grew"
    for name, t in m["state"]:
        assert t.grad_fn is None and not t.requires_grad, f"{name} carries a graph"


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_thirty_steps_keep_no_graph(name):
    m = train(OPTIMIZERS[name])
    assert_flat(m)
    assert all(map(lambda x: x == x, m["losses"]))  # finite


def test_the_checks_catch_a_kept_graph():
    """The bad variant: every loss kept with its graph. The same checks fail, on each of
    their measures."""
    kept: list = []
    m = train(OPTIMIZERS["adahessian"], keep=kept)
    with pytest.raises(AssertionError, match="still held by a graph"):
        assert_flat(m)
    held = [c for c, _ in m["saved"]]
    assert held == sorted(held) and held[-1] == STEPS * held[0] > 0  # one graph per step
    (n10, _), (n30, _) = m[MIDDLE], m[STEPS]
    assert n30 - n10 > SLACK  # the gc count sees the kept losses too
    per_step = m["saved"][0][1]  # bytes the forward graph of one step saves (about 220 KB)
    assert m["saved"][-1][1] == STEPS * per_step
    del kept[:]
    gc.collect()
