"""The autograd building blocks of every curvature product in curvlab.

One place for the few ways curvlab differentiates: a gradient that keeps its graph, a
vector-Jacobian product against ``k`` stacked cotangents (batched with ``is_grads_batched`` or
looped), a Jacobian-vector product by the double-VJP trick, a functional call of a model with
replaced parameters, and the vmap-or-loop rule for ``torch.func`` transforms. The pure
functions of :mod:`curvlab.func`, the operators' per-batch products and the optimizers'
graph products are all built from these.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager, nullcontext

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, jvp, vjp, vmap

__all__ = [
    "grad_with_graph",
    "vjp_batched",
    "jvp_by_double_vjp",
    "hvp_fwd_rev",
    "linearize",
    "curvature_pass",
    "padding_rows",
    "call_functional",
    "vmap_or_loop",
]


def grad_with_graph(loss: Tensor, params: Sequence[Tensor]) -> list[Tensor]:
    """First-order gradient of ``loss`` with its graph (for a double backward); unused
    parameters get zeros (that carry no graph)."""
    return list(
        torch.autograd.grad(
            loss, list(params), create_graph=True, allow_unused=True, materialize_grads=True
        )
    )


def vjp_batched(
    outputs: Sequence[Tensor],
    inputs: Sequence[Tensor],
    cotangents: Sequence[Tensor],
    k: int | None = None,
    *,
    retain_graph: bool,
    batched: bool = True,
    create_graph: bool = False,
) -> list[Tensor]:
    """``sum_j d outputs_j / d inputs`` contracted with ``k`` stacked cotangents.

    ``cotangents[j]`` has shape ``(k, *outputs[j].shape)``; the result has one tensor of shape
    ``(k, *inputs[i].shape)`` per input. With ``outputs`` the gradients of a loss (with their
    graph) this is ``k`` Hessian-vector products. Outputs that do not require grad (constant
    gradients, e.g. of a bias in a linear model) contribute zero. ``k > 1`` with ``batched``
    uses ``is_grads_batched`` (vmap over the backward pass), with a column loop as fallback for
    operations that have no batching rule; ``batched=False`` loops over the columns.
    """
    inputs = list(inputs)
    if k is None:
        k = int(cotangents[0].shape[0])
    pairs = [(o, c) for o, c in zip(outputs, cotangents) if o.requires_grad]
    if not pairs:
        return [torch.zeros((k, *p.shape), dtype=p.dtype, device=p.device) for p in inputs]
    outs = [o for o, _ in pairs]
    cots = [c for _, c in pairs]
    kw = dict(allow_unused=True, materialize_grads=True, create_graph=create_graph)
    if k == 1:
        res = torch.autograd.grad(
            outs, inputs, [c[0] for c in cots], retain_graph=retain_graph, **kw
        )
        return [r.unsqueeze(0) for r in res]
    if batched:
        try:
            return list(
                torch.autograd.grad(
                    outs, inputs, cots, retain_graph=True, is_grads_batched=True, **kw
                )
            )
        except (RuntimeError, NotImplementedError):
            pass  # an operation without a batching rule: loop over the columns
    cols = [
        torch.autograd.grad(
            outs, inputs, [c[j] for c in cots], retain_graph=retain_graph or j < k - 1, **kw
        )
        for j in range(k)
    ]
    return [torch.stack([col[m] for col in cols]) for m in range(len(inputs))]


def jvp_by_double_vjp(
    out: Tensor, params: Sequence[Tensor], V: Sequence[Tensor], k: int, *, batched: bool = True
) -> Tensor:
    """``J V`` for ``k`` stacked directions ``V`` (one ``(k, *p.shape)`` tensor per parameter),
    ``J`` the Jacobian of ``out`` with respect to ``params``: the VJP ``u -> J^T u`` is linear
    in ``u``, so ``J v`` is its VJP against ``v``. Returns ``(k, *out.shape)``; the graph of
    ``out`` is kept."""
    u = torch.zeros_like(out, requires_grad=True)
    gu = torch.autograd.grad(
        out, list(params), u, create_graph=True, allow_unused=True, materialize_grads=True
    )
    (jv,) = vjp_batched(list(gu), [u], V, k, retain_graph=True, batched=batched)
    return jv


def call_functional(model: nn.Module, pdict: Mapping[str, Tensor], X):
    """``model`` evaluated on the batch inputs ``X`` (a tensor, a tuple passed positionally or
    a dict passed as keyword arguments) with the parameters named in ``pdict`` replaced."""
    if isinstance(X, Mapping):
        return functional_call(model, dict(pdict), args=(), kwargs=dict(X), strict=False)
    args = tuple(X) if isinstance(X, tuple | list) else (X,)
    return functional_call(model, dict(pdict), args, strict=False)


def vmap_or_loop(
    fn: Callable[[dict[str, Tensor]], dict[str, Tensor]],
    vdicts: dict[str, Tensor],
    k: int,
    *,
    batched: bool = True,
    memo: dict | None = None,
) -> dict[str, Tensor]:
    """Apply ``fn`` (dict -> dict) to ``k`` stacked directions: ``torch.func.vmap`` where it
    works (and ``batched``), else a loop over the columns. ``memo`` (a dict kept by the caller)
    remembers that vmap failed, so that it is not retried on every product."""
    if k == 1:
        out = fn({n: v[0] for n, v in vdicts.items()})
        return {n: t.unsqueeze(0) for n, t in out.items()}
    memo = {} if memo is None else memo
    if batched and memo.get("vmap_ok", True):
        try:
            return vmap(fn)(vdicts)
        except (RuntimeError, NotImplementedError, ValueError):
            memo["vmap_ok"] = False
    cols = [fn({n: v[j] for n, v in vdicts.items()}) for j in range(k)]
    return {n: torch.stack([c[n] for c in cols]) for n in vdicts}


def hvp_fwd_rev(f, pdict: dict[str, Tensor], vd: dict[str, Tensor]) -> dict[str, Tensor]:
    """``Hessian(f)(pdict) @ vd`` by forward-over-reverse (``jvp`` of ``grad``); the one
    implementation behind :func:`curvlab.func.hvp` and the operators' ``"fwd-rev"`` mode."""
    try:
        return jvp(grad(f), (pdict,), (vd,))[1]
    except RuntimeError as err:
        if "ZeroTensors are immutable" in str(err):
            raise RuntimeError(
                "forward-over-reverse failed inside loss_fn on this torch version "
                "(a known torch.func limitation, e.g. F.mse_loss): use mode='rev-rev'."
            ) from err
        raise


def linearize(
    fn: Callable[[dict[str, Tensor]], Tensor], pdict: dict[str, Tensor], *, mode: str = "fwd-rev"
):
    """``fn``'s value at ``pdict`` with its Jacobian products, for ``torch.func`` transforms.

    Returns ``(out, vjp_fn, jvp_fn)``: ``vjp_fn(u)`` is ``J^T u`` as a dict and ``jvp_fn(v)``
    is ``J v``, by a forward-mode JVP (``"fwd-rev"``) or by the double-VJP trick
    (``"rev-rev"``: ``u -> J^T u`` is linear, its VJP against ``v`` is ``J v``). The one
    implementation of Jacobian products behind :func:`curvlab.func.ggnvp` and the operators'
    ``"fwd-rev"`` GGN and empirical Fisher.
    """
    out, pullback = vjp(fn, pdict)

    def vjp_fn(u: Tensor) -> dict[str, Tensor]:
        return pullback(u)[0]

    if mode == "fwd-rev":

        def jvp_fn(v: dict[str, Tensor]) -> Tensor:
            return jvp(fn, (pdict,), (v,))[1]

    else:
        _, pull2 = vjp(vjp_fn, torch.zeros_like(out))

        def jvp_fn(v: dict[str, Tensor]) -> Tensor:
            return pull2(v)[0]

    return out, vjp_fn, jvp_fn


@contextmanager
def curvature_pass():
    """The context of every second-order pass (double backward, forward-over-reverse).

    Fused scaled-dot-product attention kernels (flash / memory-efficient, the default of
    ``F.scaled_dot_product_attention``, Hugging Face's ``sdpa`` attention, timm's ViTs,
    ``nn.TransformerEncoderLayer``) have neither a double backward nor a forward derivative;
    the math backend has both, so it is selected here. The fused fast paths of
    ``nn.MultiheadAttention`` and ``nn.TransformerEncoderLayer`` (taken in eval mode when no
    input requires grad, as under ``torch.func`` transforms) are turned off for the same reason.
    Errors of operations without a forward-mode derivative are re-raised with the fix
    (``mode="rev-rev"``).
    """
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # pragma: no cover - torch < 2.3
        ctx = nullcontext()
    else:
        ctx = sdpa_kernel(SDPBackend.MATH)
    mha = getattr(torch.backends, "mha", None)
    fastpath = mha.get_fastpath_enabled() if mha is not None else None
    try:
        if mha is not None:
            mha.set_fastpath_enabled(False)
        with ctx:
            yield
    except NotImplementedError as err:
        if "forward AD" in str(err):
            raise NotImplementedError(
                f"{err}\ncurvlab: an operation of the model has no forward-mode derivative in "
                "this torch version; use mode='rev-rev' (reverse-over-reverse)."
            ) from err
        raise
    except RuntimeError as err:
        if "derivative for" in str(err) and "not implemented" in str(err):
            raise RuntimeError(
                f"{err}\ncurvlab: an operation of the model has no double backward. Fused "
                "attention is switched to the math backend automatically; for another fused "
                "kernel, use its unfused form in the model (or mode='fwd-rev' if it has a "
                "forward derivative)."
            ) from err
        raise
    finally:
        if mha is not None:
            mha.set_fastpath_enabled(fastpath)


def padding_rows(model: nn.Module, names: Sequence[str], params: Sequence[Tensor]) -> Tensor:
    """Flat indices (into the parameter vector of ``params``) of the rows of embedding weights
    at their ``padding_idx``.

    Autograd treats such a row as a constant (its gradient is always zero), so the curvature has
    zero rows there; a forward-mode tangent, however, flows through it (the forward pass reads
    the row), which made forward-over-reverse products asymmetric. Directions are zeroed on
    these entries, which gives every mode the reverse-mode answer.
    """
    owner = {}
    for m in model.modules():
        if isinstance(m, nn.Embedding | nn.EmbeddingBag) and m.padding_idx is not None:
            owner[id(m.weight)] = m.padding_idx
    idx, start = [], 0
    for p in params:
        if id(p) in owner and p.dim() == 2:
            row = owner[id(p)] % p.shape[0]
            idx.extend(range(start + row * p.shape[1], start + (row + 1) * p.shape[1]))
        start += p.numel()
    device = params[0].device if params else None
    return torch.tensor(idx, dtype=torch.long, device=device)
