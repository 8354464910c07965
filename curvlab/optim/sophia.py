"""Sophia: clipped, diagonally preconditioned momentum (Sophia-H and Sophia-G)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_positive
from .._public import public_dir
from ._clipped_momentum import ClippedMomentumOptimizer
from ._closure import ClosureError, take_gradient
from ._context import StepContext, hutchinson_diagonal

__all__ = ["Sophia"]
__dir__ = public_dir(globals())

ESTIMATORS = ("hutchinson", "gnb")
ESTIMATOR_ALIASES = {
    "h": "hutchinson",
    "sophia-h": "hutchinson",
    "g": "gnb",
    "sophia-g": "gnb",
    "gauss-newton-bartlett": "gnb",
}


def sampled_label_loss(output: Tensor, generator: torch.Generator) -> tuple[Tensor, int]:
    """Cross-entropy of ``output`` (logits) against labels sampled from the model itself.

    ``(..., C)`` logits with ``C >= 2``: categorical labels from ``softmax``; ``(...,)`` or
    ``(..., 1)``: Bernoulli labels from ``sigmoid`` with the binary cross-entropy. Returns the
    mean loss and the number of sampled labels.
    """
    if not isinstance(output, Tensor) or not output.requires_grad:
        raise ClosureError(
            "Sophia-G needs the model output (logits, with their graph): make the closure "
            "return (loss, output)."
        )
    if output.dtype in (torch.float16, torch.bfloat16):  # logits of an autocast forward
        output = output.float()
    logits = output.detach()
    if output.dim() >= 2 and output.shape[-1] >= 2:
        c = output.shape[-1]
        flat_logits = output.reshape(-1, c)
        probs = torch.softmax(logits.reshape(-1, c).float(), dim=-1)
        labels = torch.multinomial(probs.to(generator.device), 1, generator=generator)
        labels = labels.reshape(-1).to(output.device)
        return F.cross_entropy(flat_logits, labels), flat_logits.shape[0]
    z = output.reshape(-1)
    probs = torch.sigmoid(logits.reshape(-1))
    u = torch.rand(probs.shape, generator=generator, device=generator.device, dtype=probs.dtype)
    labels = (u.to(probs.device) < probs).to(z.dtype)
    return F.binary_cross_entropy_with_logits(z, labels), z.shape[0]


class Sophia(ClippedMomentumOptimizer):
    r"""Sophia (Liu et al., 2024): momentum preconditioned by a clipped diagonal curvature.

    Every ``update_each`` steps a diagonal curvature estimate :math:`\hat h` refreshes
    :math:`h_t = \beta_2 h_{t-k} + (1 - \beta_2) \hat h`; every step

    .. math::

        \theta &\leftarrow \theta - \eta \lambda \theta, \qquad
        m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t, \\
        \theta &\leftarrow \theta - \eta \,
            \mathrm{clip}\!\left( \frac{m_t}{\max(\rho\, h_t, \epsilon)}, 1 \right),

    with ``clip(x, 1)`` element-wise to :math:`[-1, 1]`; the fraction of coordinates clipped
    at the last step is ``clip_rate()``. Estimators:

    ``"hutchinson"`` (Sophia-H)
        :math:`\hat h = u \odot (H u)` with a Rademacher probe :math:`u`.
    ``"gnb"`` (Sophia-G, Gauss-Newton-Bartlett)
        labels :math:`\hat y` are sampled from the model's own predictive distribution,
        :math:`\hat g` is the gradient of the mean loss on :math:`\hat y`, and
        :math:`\hat h = B\, \hat g \odot \hat g` with :math:`B` the number of sampled labels.
        The closure must return ``(loss, logits)``; logits ``(..., C)`` give categorical
        labels (cross-entropy), logits ``(...,)`` or ``(..., 1)`` Bernoulli labels.

    :math:`h` and :math:`m` start at zero without bias correction, as in the authors' code.
    The step-size family's "Sophia-style" optimizer of study B, ``clamp(m / max(h, eps),
    -rho, rho)`` with learning rate ``lr_B``, is this rule with ``rho`` as here and
    ``lr = lr_B * rho``.

    Parameters
    ----------
    params
        Parameters or parameter groups.
    lr
        :math:`\eta`, the largest per-coordinate move (default ``1e-2``, for small problems;
        the authors use ``1e-4`` to ``6e-4`` on GPT-2). On a freshly initialized transformer
        the clip is saturated (``clip_rate()`` near 1) and the update is ``lr * sign(m)``:
        use a decaying schedule (e.g. cosine from ``1e-2``) or a constant ``lr`` of about
        ``5e-3`` (user guide, "Training transformers").
    betas
        :math:`(\beta_1, \beta_2)` (default ``(0.965, 0.99)``).
    rho
        :math:`\rho` (default 0.04).
    weight_decay
        Decoupled weight decay :math:`\lambda` (default 0.1, the authors' default).
    eps
        :math:`\epsilon` (default ``1e-12``).
    update_each
        Curvature refresh period :math:`k` (default 10). The first step refreshes.
    estimator
        ``"hutchinson"`` (default; aliases ``"H"``, ``"sophia-h"``) or ``"gnb"`` (aliases
        ``"G"``, ``"sophia-g"``, ``"gauss-newton-bartlett"``).
    seed
        Seed of the probe / label generator.
    max_grad_norm
        Clip the gradient by its total norm before the update (see
        :class:`~curvlab.optim.CurvatureOptimizer`).

    References
    ----------
    H. Liu, Z. Li, D. Hall, P. Liang, T. Ma. "Sophia: A Scalable Stochastic Second-order
    Optimizer for Language Model Pre-training". ICLR 2024. arXiv:2305.14342.

    Examples
    --------
    >>> import torch
    >>> from curvlab.optim import Sophia
    >>> model = torch.nn.Linear(4, 3)
    >>> X, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    >>> def closure():
    ...     out = model(X)
    ...     return torch.nn.functional.cross_entropy(out, y), out
    >>> opt = Sophia(model.parameters(), estimator="gnb")
    >>> loss = opt.step(closure)
    """

    _buffers = ("exp_avg", "hessian")

    def __init__(
        self,
        params,
        lr: float = 1e-2,
        betas: tuple[float, float] = (0.965, 0.99),
        rho: float = 0.04,
        weight_decay: float = 0.1,
        *,
        eps: float = 1e-12,
        update_each: int = 10,
        estimator: str = "hutchinson",
        seed: int | torch.Generator | None = 0,
        process_group=None,
        max_grad_norm: float | None = None,
    ):
        if isinstance(estimator, str):
            estimator = ESTIMATOR_ALIASES.get(estimator.lower(), estimator)
        if estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}.")
        self.estimator = estimator
        super().__init__(
            params,
            lr,
            betas,
            rho,
            weight_decay,
            eps=eps,
            update_each=update_each,
            seed=seed,
            process_group=process_group,
            max_grad_norm=max_grad_norm,
        )

    def _check_group(self, group):
        super()._check_group(group)
        check_positive(group["eps"], "eps")

    def _needs_graph(self) -> bool:
        return self.estimator == "hutchinson" and self._refresh()

    def _needs_output(self) -> bool:
        return self.estimator == "gnb" and self._refresh()

    def _prepare(self, ctx: StepContext):
        if not self._refresh():
            return None
        params = ctx.params
        if self.estimator == "hutchinson":
            ctx.require_graph("Sophia-H")
            return hutchinson_diagonal(ctx, params, self._generator)
        loss_hat, num = sampled_label_loss(ctx.output, self._generator)
        ghat = take_gradient(loss_hat, params, create_graph=False)
        ctx.counts["gradients"] += 1
        ghat = [torch.zeros_like(p) if g is None else g for g, p in zip(ghat, params)]
        if ctx.reduce is not None:  # data-parallel: the sampled-label gradient of the global
            ctx.reduce(ghat)  # batch is the average; the batch size is world_size times larger
            num = num * ctx.world_size
        return [num * g * g for g in ghat]

    def _update_denominator(self, v: Tensor, group: dict) -> Tensor:
        return torch.clamp(group["rho"] * v, min=group["eps"])

    def _clip_bound(self, group: dict) -> float:
        return 1.0
