"""Pure curvature-vector products over parameter dicts (``torch.func``).

These are the building blocks for users who already work functionally: ``f`` maps a dict of
parameters to a scalar, and the products return dicts with the same keys (or flat tensors when
``v`` is flat). They and the operators of :mod:`curvlab.operators` share one implementation of
each product (``curvlab._autograd``: forward-over-reverse HVPs, Jacobian products by JVP or by
the double-VJP trick); the operators add the data loop and, in ``"rev-rev"`` mode, an autograd
double-backward path that keeps each batch's first-order graph between products.

Two modes compute a Hessian-vector product:

``"rev-rev"``
    reverse-over-reverse: the gradient of ``<grad f(p), v>``. Works for every differentiable
    ``f``; the default.
``"fwd-rev"``
    forward-over-reverse: the JVP of ``grad f`` along ``v``. Less memory on large models, but
    some losses fail under forward-mode AD on some torch versions (for example
    ``F.mse_loss(reduction="mean")`` raises "ZeroTensors are immutable" on torch 2.13).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from torch import Tensor
from torch.func import grad

from ._autograd import hvp_fwd_rev, linearize
from ._params import flatten, unflatten_dict
from ._public import public_dir

__all__ = ["hvp", "ggnvp", "MODES"]
__dir__ = public_dir(globals())

MODES = ("rev-rev", "fwd-rev")

Params = Mapping[str, Tensor]


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")


def _as_dict(v: Tensor | Params, params: Params) -> tuple[dict[str, Tensor], bool]:
    """Return ``v`` as a dict like ``params`` and whether it came flat."""
    if isinstance(v, Tensor):
        if v.dim() != 1:
            raise ValueError(f"a flat v must be 1-D, got shape {tuple(v.shape)}.")
        return unflatten_dict(v, params), True
    if set(v.keys()) != set(params.keys()):
        raise ValueError("v must have the same keys as params.")
    for k, p in params.items():
        if v[k].shape != p.shape:
            raise ValueError(f"v[{k!r}] has shape {tuple(v[k].shape)}, expected {tuple(p.shape)}.")
    return {k: v[k] for k in params}, False


def _dot(a: Params, b: Params) -> Tensor:
    return sum((a[k] * b[k]).sum() for k in a)


def hvp(
    f: Callable[[dict[str, Tensor]], Tensor],
    params: Params,
    v: Tensor | Params,
    *,
    mode: str = "rev-rev",
) -> Tensor | dict[str, Tensor]:
    r"""Hessian-vector product :math:`\nabla^2 f(p)\, v` of a scalar function of a parameter dict.

    Parameters
    ----------
    f
        Function from a dict of tensors to a scalar tensor.
    params
        Point at which the Hessian is taken.
    v
        Direction: a dict with the keys and shapes of ``params``, or a flat vector.
    mode
        ``"rev-rev"`` (default) or ``"fwd-rev"``; see the module docstring.

    Returns
    -------
    dict or Tensor
        The product, in the same format as ``v``.

    Examples
    --------
    >>> import torch
    >>> from curvlab.func import hvp
    >>> f = lambda p: (p["x"] ** 3).sum()
    >>> hvp(f, {"x": torch.tensor([1.0, 2.0])}, torch.tensor([1.0, 1.0]))
    tensor([ 6., 12.])
    """
    _check_mode(mode)
    params = dict(params)
    vd, flat = _as_dict(v, params)

    def scalar_f(p):
        out = f(p)
        if not isinstance(out, Tensor) or out.numel() != 1:
            raise ValueError(
                "f must return a scalar tensor; reduce the loss (e.g. reduction='mean')."
            )
        return out.reshape(())

    if mode == "rev-rev":
        out = grad(lambda p: _dot(grad(scalar_f)(p), vd))(params)
    else:
        out = hvp_fwd_rev(scalar_f, params, vd)
    return flatten(out) if flat else out


def ggnvp(
    model_fn: Callable[[dict[str, Tensor]], Tensor],
    loss_fn: Callable[[Tensor], Tensor],
    params: Params,
    v: Tensor | Params,
    *,
    mode: str = "rev-rev",
) -> Tensor | dict[str, Tensor]:
    r"""Generalized Gauss-Newton product :math:`J^\top H_\ell J v`.

    ``J`` is the Jacobian of ``model_fn`` (params -> outputs) and ``H_l`` the Hessian of
    ``loss_fn`` (outputs -> scalar) at the model's output. The curvature of the model itself
    (second derivatives of ``model_fn``) is dropped, which makes the GGN positive semi-definite
    for convex losses.

    Parameters
    ----------
    model_fn
        Function from the parameter dict to the network output.
    loss_fn
        Function from the output to a scalar loss (the targets bound in a closure).
    params, v, mode
        As in :func:`hvp`. ``"rev-rev"`` computes ``J v`` by the double-VJP trick,
        ``"fwd-rev"`` by a forward-mode JVP.

    Examples
    --------
    >>> import torch
    >>> from curvlab.func import ggnvp
    >>> A = torch.tensor([[1.0, 2.0], [0.0, 1.0]])
    >>> model_fn = lambda p: A @ p["w"]
    >>> loss_fn = lambda out: 0.5 * (out ** 2).sum()
    >>> ggnvp(model_fn, loss_fn, {"w": torch.zeros(2)}, torch.tensor([1.0, 0.0]))
    tensor([1., 2.])
    """
    _check_mode(mode)
    params = dict(params)
    vd, flat = _as_dict(v, params)
    out, vjp_fn, jvp_fn = linearize(model_fn, params, mode=mode)
    jv = jvp_fn(vd)
    out_d = out.detach()

    def scalar_loss(o):
        val = loss_fn(o)
        if val.numel() != 1:
            raise ValueError("loss_fn must return a scalar tensor.")
        return val.reshape(())

    h_jv = grad(lambda o: (grad(scalar_loss)(o) * jv).sum())(out_d)
    res = vjp_fn(h_jv)
    return flatten(res) if flat else res
