"""What the operators need to know of a loss: reduction, output Hessian, samples, per-sample terms.

Supported in closed form: ``nn.CrossEntropyLoss``, ``nn.MSELoss`` and ``nn.BCEWithLogitsLoss``
(reduction ``"mean"`` or ``"sum"``). Any other callable ``loss_fn(output, target) -> scalar``
works for the Hessian and the exact GGN (its output Hessian is then taken by autograd), but not
for the Monte-Carlo Fisher or the empirical Fisher, which need a likelihood or per-sample terms.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..risk import reduction_of

KNOWN = (nn.CrossEntropyLoss, nn.MSELoss, nn.BCEWithLogitsLoss)


def check_known(loss_fn, what: str) -> None:
    if not isinstance(loss_fn, KNOWN):
        raise TypeError(
            f"{what} needs a loss with a known likelihood: nn.CrossEntropyLoss, nn.MSELoss or "
            f"nn.BCEWithLogitsLoss; got {type(loss_fn).__name__}. Use HessianOperator for "
            "arbitrary losses (and GGNOperator with mc_samples=0 for any twice-differentiable one)."
        )


#: losses that are piecewise linear in the output: their output Hessian is zero almost
#: everywhere, so their GGN (and Fisher) is the zero matrix
_NO_CURVATURE = (nn.L1Loss, nn.MarginRankingLoss, nn.HingeEmbeddingLoss)


class NoCurvatureWarning(UserWarning):
    """A batch's loss had no second derivative with respect to the model output."""


class NoOutputCurvature(ValueError):
    """The loss has no second derivative with respect to the model output."""


def check_ggn_supported(loss_fn) -> None:
    """Reject losses and loss options whose output Hessian the closed forms do not cover, and
    losses without curvature in the output (their GGN would be the zero matrix)."""
    if isinstance(loss_fn, _NO_CURVATURE) or (
        isinstance(loss_fn, nn.MultiMarginLoss) and loss_fn.p == 1
    ):
        raise NoOutputCurvature(
            f"{type(loss_fn).__name__} is piecewise linear in the model output: its Hessian "
            "with respect to the output is zero almost everywhere, so the GGN (and the Fisher) "
            "would be the zero matrix. Use HessianOperator for the curvature of the network "
            "through this loss, or a loss with curvature (nn.MSELoss, nn.SmoothL1Loss, "
            "nn.HuberLoss) for a Gauss-Newton matrix."
        )
    if isinstance(loss_fn, nn.CrossEntropyLoss) and loss_fn.weight is not None:
        raise ValueError(
            "GGN/Fisher with class weights in CrossEntropyLoss is not supported; "
            "drop weight= or use HessianOperator."
        )
    if isinstance(loss_fn, nn.BCEWithLogitsLoss) and (
        loss_fn.weight is not None or loss_fn.pos_weight is not None
    ):
        raise ValueError(
            "GGN/Fisher with weight= or pos_weight= in BCEWithLogitsLoss is not supported; "
            "drop them or use HessianOperator."
        )


def _ce_mask_and_count(loss_fn: nn.CrossEntropyLoss, out: Tensor, y: Tensor):
    """Mask of counted target positions (shape of out without the class dim) and their number."""
    if y.dtype in (torch.long, torch.int, torch.int32, torch.int64, torch.int16, torch.uint8):
        mask = (y != loss_fn.ignore_index).to(out.dtype)
        return mask, mask.sum()
    # probability targets: every position counts
    shape = (out.shape[0],) + tuple(out.shape[2:])
    mask = torch.ones(shape, dtype=out.dtype, device=out.device)
    return mask, torch.tensor(float(mask.numel()), dtype=out.dtype, device=out.device)


def _class_dim_check(out: Tensor) -> None:
    if out.dim() < 2:
        raise ValueError(
            f"CrossEntropyLoss curvature needs batched logits (N, C, ...), got {tuple(out.shape)}."
        )


def output_hessian_product(loss_fn, out: Tensor, y: Tensor, M: Tensor) -> Tensor:
    """``H_out @ M`` where ``H_out`` is the Hessian of ``loss_fn(., y)`` at ``out``.

    ``M`` has the shape of ``out`` (one vector) or ``(k, *out.shape)`` (k vectors).
    """
    out = out.detach()
    red = reduction_of(loss_fn)
    if isinstance(loss_fn, nn.MSELoss):
        c = 2.0 / out.numel() if red == "mean" else 2.0
        return c * M
    if isinstance(loss_fn, nn.BCEWithLogitsLoss):
        s = torch.sigmoid(out)
        c = 1.0 / out.numel() if red == "mean" else 1.0
        return c * s * (1 - s) * M
    if isinstance(loss_fn, nn.CrossEntropyLoss):
        _class_dim_check(out)
        p = torch.softmax(out, dim=1)
        mask, count = _ce_mask_and_count(loss_fn, out, y)
        cdim = 1 if M.dim() == out.dim() else 2
        pm = p * M
        hm = pm - p * pm.sum(dim=cdim, keepdim=True)
        hm = hm * mask.unsqueeze(1)
        if red == "mean":
            hm = hm / count.clamp_min(1)
        return hm
    # generic: autograd on the output
    o = out.clone().requires_grad_(True)
    with torch.enable_grad():
        val = loss_fn(o, y)
        (g,) = torch.autograd.grad(val, o, create_graph=True)
        if not g.requires_grad:
            warnings.warn(
                f"the loss {getattr(loss_fn, '__name__', type(loss_fn).__name__)} has no second "
                "derivative with respect to the "
                "model output here (it is linear in it): this batch adds nothing to the GGN. "
                "Check that the loss is the one you mean; HessianOperator keeps the network's "
                "curvature.",
                NoCurvatureWarning,
                stacklevel=2,
            )
            return torch.zeros_like(M)
        if M.dim() == out.dim():
            (h,) = torch.autograd.grad(g, o, M, allow_unused=True, materialize_grads=True)
            return h
        cols = [
            torch.autograd.grad(g, o, M[j], retain_graph=True, materialize_grads=True)[0]
            for j in range(M.shape[0])
        ]
        return torch.stack(cols)


def sample_output_gradients(
    loss_fn, out: Tensor, mc_samples: int, generator: torch.Generator
) -> tuple[Tensor, int]:
    """Sampled output gradients ``S`` of shape ``(mc_samples, *out.shape)``.

    ``E[S_m S_m^T] = H_out`` per event (per sample for MSE/BCE, per position for CE), with the
    loss's reduction scaling included. Returns ``S`` and the number of leading "event" dims of
    the contraction: the dot product ``S_m . M`` runs over dim 1 (classes) for CE and over all
    non-batch dims otherwise.
    """
    out = out.detach()
    red = reduction_of(loss_fn)
    shape = (mc_samples, *out.shape)
    if isinstance(loss_fn, nn.MSELoss):
        c = 2.0 / out.numel() if red == "mean" else 2.0
        xi = torch.randn(shape, generator=generator, dtype=out.dtype, device=out.device)
        return math.sqrt(c) * xi
    if isinstance(loss_fn, nn.BCEWithLogitsLoss):
        c = 1.0 / out.numel() if red == "mean" else 1.0
        s = torch.sigmoid(out)
        u = torch.rand(shape, generator=generator, dtype=out.dtype, device=out.device)
        yhat = (u < s).to(out.dtype)
        return math.sqrt(c) * (s - yhat)
    # cross-entropy: sample a class per position
    _class_dim_check(out)
    p = torch.softmax(out, dim=1)
    C = out.shape[1]
    pc = p.movedim(1, -1).reshape(-1, C)
    idx = torch.multinomial(pc, mc_samples, replacement=True, generator=generator)  # (P, m)
    onehot = F.one_hot(idx.T, C).to(out.dtype)  # (m, P, C)
    moved_shape = (out.shape[0], *out.shape[2:], C)
    onehot = onehot.reshape(mc_samples, *moved_shape).movedim(-1, 2)
    return p.unsqueeze(0) - onehot


def mc_fisher_output_product(loss_fn, out: Tensor, y: Tensor, S: Tensor, M: Tensor) -> Tensor:
    """``(1/m) sum_m S_m (S_m . M)`` per event; ``M`` is ``out``-shaped or ``(k, *out.shape)``."""
    m = S.shape[0]
    batched = M.dim() == out.dim() + 1
    Mk = M if batched else M.unsqueeze(0)  # (k, *out)
    Sb = S.unsqueeze(1)  # (m, 1, *out)
    if isinstance(loss_fn, nn.CrossEntropyLoss):
        dots = (Sb * Mk.unsqueeze(0)).sum(dim=3, keepdim=True)  # class dim of (m,k,N,C,...)
        res = (Sb * dots).sum(0) / m
        mask, count = _ce_mask_and_count(loss_fn, out, y)
        res = res * mask.unsqueeze(1)
        if reduction_of(loss_fn) == "mean":
            res = res / count.clamp_min(1)
    else:
        red_dims = tuple(range(3, Mk.dim() + 1))
        dots = (Sb * Mk.unsqueeze(0)).sum(dim=red_dims, keepdim=True)
        res = (Sb * dots).sum(0) / m
    return res if batched else res.squeeze(0)


def per_sample_terms(loss_fn, out: Tensor, y: Tensor) -> tuple[Tensor, Tensor | float]:
    """Per-sample loss sums ``t`` of shape ``(N,)`` and the normalizer ``M`` of the batch loss:
    ``loss_fn(out, y) == t.sum() / M``.

    ``t_n`` sums sample ``n``'s unreduced loss entries (its outputs, its sequence positions);
    ``M`` is the number of entries a mean-reduced loss divides by (``N * C`` for ``MSELoss`` /
    ``BCEWithLogitsLoss`` with ``C`` outputs per sample, the number of counted positions, or
    the summed class weights, for ``CrossEntropyLoss``) and ``1`` for ``reduction="sum"``.
    """
    red = reduction_of(loss_fn)
    N = out.shape[0]
    if isinstance(loss_fn, nn.MSELoss):
        if out.shape != y.shape:
            raise ValueError(
                f"MSELoss output shape {tuple(out.shape)} and target shape {tuple(y.shape)} differ."
            )
        terms = ((out - y) ** 2).reshape(N, -1).sum(1)
        return terms, (float(out.numel()) if red == "mean" else 1.0)
    if isinstance(loss_fn, nn.BCEWithLogitsLoss):
        el = F.binary_cross_entropy_with_logits(
            out, y, weight=loss_fn.weight, pos_weight=loss_fn.pos_weight, reduction="none"
        )
        terms = el.reshape(N, -1).sum(1)
        return terms, (float(el.numel()) if red == "mean" else 1.0)
    if isinstance(loss_fn, nn.CrossEntropyLoss):
        _class_dim_check(out)
        el = F.cross_entropy(
            out,
            y,
            weight=loss_fn.weight,
            ignore_index=loss_fn.ignore_index,
            label_smoothing=loss_fn.label_smoothing,
            reduction="none",
        )
        terms = el.reshape(N, -1).sum(1)
        if red == "sum":
            return terms, 1.0
        if y.is_floating_point():
            return terms, float(el.numel())
        valid = y != loss_fn.ignore_index
        if loss_fn.weight is not None:
            denom = (loss_fn.weight[y.clamp_min(0)] * valid).sum()
        else:
            denom = valid.sum()
        return terms, denom.clamp_min(1).to(out.dtype).detach()
    check_known(loss_fn, "EmpiricalFisherOperator")
    raise AssertionError("unreachable")
