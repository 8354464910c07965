r"""The empirical risk of a model over a data set: the one data contract of curvlab.

.. math:: L(\theta) = \sum_b w_b\, \ell\big(f_\theta(X_b), y_b\big), \qquad
          w_b = B_b / N \ (\text{mean-reduced losses}), \quad w_b = 1 \ (\text{sum-reduced}),

over every batch ``(X_b, y_b)`` of ``data`` (``B_b`` its size, ``N`` the number of samples):
the batch-size-weighted mean, never an unweighted mean of batch means, so that any split of the
same samples gives the same risk. Every consumer of ``(model, loss_fn, data)`` in curvlab (the
curvature operators, the landscapes, the optimizers' helpers, the spectral-bias tracker) reads
data through this module, so they all see the same function.

The rules, in one place:

Batches
    A batch is ``(X, y)``. ``X`` is a tensor, a tuple (passed to the model positionally) or a
    dict (passed as keyword arguments). Batches are moved to the parameters' device, and their
    floating-point tensors are cast to the parameters' dtype (a ``model.double()`` takes float32
    data); integer tensors (labels, token ids, masks) keep their dtype.
Model outputs
    ``output=`` says how to get the tensor that ``loss_fn`` takes from what the model returns:
    see :func:`~curvlab.risk.model_output`.
Train / eval mode
    curvlab never calls ``model.eval()`` or ``model.train()``: everything is evaluated in the
    mode the model is in, the same for every consumer. A model with BatchNorm in train mode is
    the function with batch statistics (a warning says so). Buffers that a forward pass in
    train mode updates (BatchNorm running statistics, their counters) are restored after every
    pass, so an analysis leaves the model as it found it.
Determinism
    At construction (``check_deterministic=True``, the default) two passes over the data are
    compared batch by batch: the inputs and targets of each batch (a fingerprint) and each
    batch's loss. A shuffling loader, a random augmentation or dropout in train mode raises a
    :class:`ValueError` naming the cause and the fix.
Processes
    With a ``process_group`` every rank passes its own shard; sample counts, losses, gradients
    and metrics are summed over the group through reductions that raise on every rank when one
    rank fails (:class:`curvlab.RemoteRankError`).
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ._autograd import call_functional
from ._distributed import all_reduce_checked, resolve_group, unwrap_ddp
from ._params import flatten, select_params
from ._public import public_dir

__all__ = ["EmpiricalRisk", "Batch", "Evaluation", "model_output", "predict"]
__dir__ = public_dir(globals())

Output = str | int | Callable[[Any, tuple], Tensor] | None

_RANDOM_MODULES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)
_NORM_MODULES = (nn.modules.batchnorm._BatchNorm,)


# -- batches -------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Batch:
    """One batch of the data, on the parameters' device and dtype.

    Attributes
    ----------
    index
        Position of the batch in ``data``.
    X, y
        Inputs (tensor, tuple or dict) and targets.
    size
        Number of samples.
    weight
        ``w_b``: ``size / N`` for mean-reduced losses, ``1`` for sum-reduced ones.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> import curvlab as cl
    >>> data = [(torch.ones(4, 2), torch.ones(4, 1))]
    >>> risk = cl.EmpiricalRisk(nn.Linear(2, 1), nn.MSELoss(), data)
    >>> [(b.index, b.size, b.weight) for b in risk.batches()]
    [(0, 4, 1.0)]
    """

    index: int
    X: Any = field(repr=False)
    y: Any = field(repr=False)
    size: int
    weight: float


def _cast(x, device: torch.device, dtype: torch.dtype):
    """``x`` (a tensor, a tuple/list or a dict of them) on ``device``; floating-point tensors
    cast to ``dtype``, other tensors (labels, token ids, masks) keep theirs."""
    if isinstance(x, Tensor):
        if x.is_floating_point() and x.dtype != dtype:
            return x.to(device=device, dtype=dtype)
        return x.to(device) if x.device != device else x
    if isinstance(x, tuple | list):
        return type(x)(_cast(t, device, dtype) for t in x)
    if isinstance(x, Mapping):
        return {k: _cast(v, device, dtype) for k, v in x.items()}
    return x


def _leaves(x) -> list[Tensor]:
    if isinstance(x, Tensor):
        return [x]
    if isinstance(x, tuple | list):
        return [t for v in x for t in _leaves(v)]
    if isinstance(x, Mapping):
        return [t for v in x.values() for t in _leaves(v)]
    return []


def batch_size(X, y) -> int:
    """Leading dimension of ``y`` (or of ``X``, or of the first tensor inside ``X``)."""
    for t in [y, X, *_leaves(X)]:
        if isinstance(t, Tensor) and t.dim() > 0:
            return int(t.shape[0])
    raise ValueError(
        "cannot tell the batch size: X or y must hold a tensor with a batch dimension."
    )


def _validate(batch, i: int) -> tuple[Any, Any, int]:
    if not isinstance(batch, tuple | list) or len(batch) != 2:
        raise TypeError(
            f"batch {i} is a {type(batch).__name__}"
            + (f" of length {len(batch)}" if isinstance(batch, tuple | list) else "")
            + "; every batch must be a pair (X, y). Wrap a TensorDataset in a DataLoader, "
            "or zip inputs and targets."
        )
    X, y = batch
    return X, y, batch_size(X, y)


def fingerprint(X, y) -> Tensor:
    """Per-tensor sums and sums of squares of a batch's inputs and targets (float64, on their
    device): two batches with different samples differ here almost surely."""
    parts = []
    for t in _leaves(X) + _leaves(y):
        d = t.detach().to(torch.float64) if not t.is_complex() else t.detach().abs().double()
        parts.append(torch.stack([d.sum(), (d * d).sum()]))
    if not parts:
        return torch.zeros(2, dtype=torch.float64)
    dev = parts[0].device
    return torch.cat([p.to(dev) for p in parts])


# -- model outputs -------------------------------------------------------------------------
def _describe(out) -> str:
    if isinstance(out, Mapping):
        return f"a {type(out).__name__} with keys {list(out.keys())}"
    return f"a {type(out).__name__}"


def model_output(out, batch: tuple, output: Output = None) -> Tensor:
    """The tensor that the loss takes, from what the model returned.

    Parameters
    ----------
    out
        The model's return value.
    batch
        The batch ``(X, y)`` it was computed on (passed to a callable ``output``).
    output
        ``None`` (default): a tensor as it is; the ``"logits"`` entry of a mapping or a
        Hugging Face ``ModelOutput``; the first element of a tuple or list. A string: that key
        of a mapping, or that attribute. An int: that element of a tuple. A callable:
        ``output(out, batch) -> Tensor``.

    Examples
    --------
    >>> import torch
    >>> from curvlab.risk import model_output
    >>> model_output({"logits": torch.ones(2), "hidden": None}, (None, None)).tolist()
    [1.0, 1.0]
    >>> model_output((torch.zeros(1), "cache"), (None, None)).tolist()
    [0.0]
    """
    if callable(output):
        res = output(out, batch)
        what = "the output= callable"
    elif output is None:
        what = "the model"
        if isinstance(out, Tensor):
            return out
        if isinstance(out, Mapping):
            if "logits" not in out:
                raise TypeError(
                    f"the model returned {_describe(out)} without a 'logits' entry: pass "
                    "output='<key>' (or a callable output(model_output, batch) -> Tensor) to say "
                    "which tensor the loss takes."
                )
            res = out["logits"]
        elif isinstance(out, tuple | list) and out:
            res = out[0]
        else:
            res = out
    elif isinstance(output, str):
        what = f"output={output!r}"
        if isinstance(out, Mapping) and output in out:
            res = out[output]
        elif hasattr(out, output):
            res = getattr(out, output)
        else:
            raise TypeError(f"the model returned {_describe(out)}, which has no {output!r}.")
    elif isinstance(output, int) and not isinstance(output, bool):
        what = f"output={output}"
        if not isinstance(out, tuple | list) or not -len(out) <= output < len(out):
            raise TypeError(
                f"output={output} needs a tuple output; the model returned {_describe(out)}."
            )
        res = out[output]
    else:
        raise TypeError(
            "output must be None, a key or attribute name, a tuple index or a callable "
            f"output(model_output, batch) -> Tensor; got {type(output).__name__}."
        )
    if not isinstance(res, Tensor):
        raise TypeError(
            f"{what} gave {_describe(res)}, not a tensor, for the loss: pass output= (a key, an "
            "index or a callable output(model_output, batch) -> Tensor)."
        )
    return res


def check_output(output: Output) -> Output:
    if output is None or callable(output) or isinstance(output, str):
        return output
    if isinstance(output, int) and not isinstance(output, bool):
        return output
    raise TypeError(
        "output must be None, a key or attribute name, a tuple index or a callable "
        f"output(model_output, batch) -> Tensor; got {type(output).__name__}."
    )


def call_model(model: nn.Module, X):
    """``model(X)``, ``model(*X)`` for a tuple or list, ``model(**X)`` for a dict."""
    if isinstance(X, Mapping):
        return model(**X)
    if isinstance(X, tuple | list):
        return model(*X)
    return model(X)


# -- train mode -----------------------------------------------------------------------------
@contextmanager
def keep_buffers(model: nn.Module):
    """Restore, on exit, the buffers of the modules that are in train mode (BatchNorm running
    statistics and counters), so that forward passes leave the model as it was.

    The values are written through ``.data``: autograd graphs that saved a buffer stay valid
    (in train mode BatchNorm's backward does not read the running statistics).
    """
    saved = [
        (b, b.detach().clone())
        for m in model.modules()
        if m.training
        for b in m.buffers(recurse=False)
        if b is not None
    ]
    try:
        yield
    finally:
        if saved:
            with torch.no_grad():
                for b, s in saved:
                    b.data.copy_(s)


@contextmanager
def _no_running_stats(model: nn.Module):
    """BatchNorm in train mode without its running-statistics update, for ``torch.func``
    transforms (which cannot mutate captured buffers). The output is the same: in train mode
    BatchNorm normalizes with the batch statistics either way."""
    bns = [
        m
        for m in model.modules()
        if isinstance(m, _NORM_MODULES) and m.training and m.track_running_stats
    ]
    for m in bns:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in bns:
            m.track_running_stats = True


def batchnorm_in_train_mode(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, _NORM_MODULES) and m.training]


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def user_stacklevel() -> int:
    """The ``stacklevel`` of :func:`warnings.warn` that points at the first caller outside
    curvlab (called from the function that warns)."""
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    return level


def warn_train_mode(model: nn.Module) -> None:
    bn = batchnorm_in_train_mode(model)
    if bn:
        warnings.warn(
            f"BatchNorm layers {bn[:3]} are in train mode: curvlab evaluates the model in the "
            "mode it is in, here the function with batch statistics (its running statistics "
            "are restored after every pass). Call model.eval() for the inference function.",
            stacklevel=user_stacklevel(),
        )


def _param_dtype_device(model: nn.Module):
    p = next(iter(model.parameters()), None)
    if p is None:
        return None, None
    return p.dtype, p.device


def predict(model: nn.Module, X, *, output: Output = None) -> Tensor:
    """``model`` evaluated on the inputs ``X`` under the batch contract, without gradients.

    ``X`` (a tensor, a tuple or a dict) is moved to the parameters' device and dtype, the
    model is called in its current mode (its train-mode buffers restored after) and ``output``
    picks the tensor (see :func:`~curvlab.risk.model_output`; a callable receives ``(X, None)``
    as batch).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from curvlab.risk import predict
    >>> predict(nn.Linear(2, 1).double(), torch.ones(3, 2)).dtype
    torch.float64
    """
    dtype, device = _param_dtype_device(model)
    if dtype is not None:
        X = _cast(X, device, dtype)
    with torch.no_grad(), keep_buffers(model):
        return model_output(call_model(model, X), (X, None), output).detach()


# -- evaluation results -------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Evaluation:
    """The empirical risk and metrics at the current parameters (no gradients).

    Attributes
    ----------
    loss
        The empirical risk (a float64 0-dim tensor).
    metrics
        ``{name: value}``: each metric ``fn(output, y)`` (a batch mean) weighted by batch size.
    num_data
        Number of samples (over all ranks).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> import curvlab as cl
    >>> model = nn.Linear(2, 1)
    >>> nn.init.zeros_(model.weight); nn.init.zeros_(model.bias)  # doctest: +ELLIPSIS
    Parameter...
    >>> risk = cl.EmpiricalRisk(model, nn.MSELoss(), [(torch.ones(4, 2), torch.ones(4, 1))])
    >>> risk.evaluate()
    Evaluation(loss=1, num_data=4)
    >>> float(risk.evaluate())
    1.0
    """

    loss: Tensor
    metrics: dict[str, Tensor] = field(default_factory=dict)
    num_data: int = 0

    def __float__(self) -> float:
        return float(self.loss)

    def __repr__(self) -> str:
        mets = "".join(f", {k}={float(v):.6g}" for k, v in self.metrics.items())
        return f"Evaluation(loss={float(self.loss):.6g}{mets}, num_data={self.num_data})"


def _scalar(v, name: str, i: int) -> Tensor:
    if not isinstance(v, Tensor):
        v = torch.as_tensor(v, dtype=torch.float64)
    if v.numel() != 1:
        raise ValueError(
            f"{name} returned shape {tuple(v.shape)} on batch {i}, not a scalar: reduce it over "
            "the batch (reduction='mean')."
        )
    return v.detach().reshape(()).to(torch.float64)


def check_metrics(metrics) -> dict[str, Callable]:
    if metrics is None:
        return {}
    if not isinstance(metrics, Mapping):
        raise TypeError("metrics must be a dict {name: fn(output, y) -> scalar}.")
    for k, f in metrics.items():
        if not isinstance(k, str) or not callable(f):
            raise TypeError(f"metrics[{k!r}] must map a str to a callable fn(output, y).")
    if "loss" in metrics:
        raise ValueError("'loss' is reserved for the loss; rename that metric.")
    return dict(metrics)


def reduction_of(loss_fn) -> str:
    """``"mean"`` or ``"sum"``; a callable without a ``reduction`` attribute counts as a mean."""
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}.")
    red = getattr(loss_fn, "reduction", "mean")
    if red == "none":
        raise ValueError(
            "loss_fn has reduction='none': curvlab needs a scalar loss per batch; use "
            "reduction='mean' (the empirical risk) or 'sum'."
        )
    if red not in ("mean", "sum"):
        raise ValueError(f"unsupported reduction {red!r}; use 'mean' or 'sum'.")
    return red


_REENTRANT = (
    "the model uses reentrant gradient checkpointing (torch.utils.checkpoint with "
    "use_reentrant=True, the default of older Hugging Face gradient_checkpointing_enable()): under "
    "torch.autograd.grad it gives the checkpointed parameters no derivatives (silently zero "
    "curvature). Use non-reentrant checkpointing: checkpoint(..., use_reentrant=False), or "
    'model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False}).'
)


def _has_reentrant_checkpoint(loss: Tensor, limit: int = 200_000) -> bool:
    """Whether the autograd graph of ``loss`` holds a reentrant checkpoint node."""
    seen, stack = set(), [loss.grad_fn]
    while stack and len(seen) < limit:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if type(node).__name__ == "CheckpointFunctionBackward":
            return True
        stack.extend(n for n, _ in node.next_functions)
    return False


#: ``params=EVALUATION_ONLY``: a risk that is only evaluated (landscapes' interpolation between
#: two models) may hold frozen parameters; it fixes the dtype and device from them
EVALUATION_ONLY = object()


# -- the empirical risk ---------------------------------------------------------------------------
class EmpiricalRisk:
    r"""The empirical risk of ``model`` under ``loss_fn`` over ``data``, and its data contract.

    :math:`L(\theta) = \sum_b w_b\, \ell(f_\theta(X_b), y_b)` with ``w_b = B_b / N`` for
    mean-reduced losses and ``w_b = 1`` for sum-reduced ones (see :mod:`curvlab.risk` for the
    rules on batches, outputs, train/eval mode, determinism and processes). The curvature
    operators, the landscapes and the spectral-bias tracker are built on it.

    Parameters
    ----------
    model
        A ``torch.nn.Module`` (a ``DistributedDataParallel`` wrapper is unwrapped and its group
        used); the selected parameters fix the dtype and device.
    loss_fn
        ``loss_fn(output, target) -> scalar`` with reduction ``"mean"`` or ``"sum"``.
    data
        A re-iterable of ``(X, y)`` batches (a list, a DataLoader without shuffling...).
    params
        ``None`` (all trainable), a submodule, a list of parameters, or names / glob patterns
        (see :func:`curvlab.params.select_params`).
    process_group
        ``torch.distributed`` group: each rank passes its own shard as ``data``.
    check_deterministic
        Compare two passes over the data at construction, batch by batch, and raise if the
        batches or their losses differ.
    output
        How to get the loss's input from the model's return value (see
        :func:`~curvlab.risk.model_output`): ``None`` (a tensor, a mapping's ``"logits"``, a
        tuple's first element), a key or attribute name, a tuple index, or
        ``output(model_output, batch) -> Tensor``.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> import curvlab as cl
    >>> data = [(torch.randn(5, 2), torch.randn(5, 1)), (torch.randn(3, 2), torch.randn(3, 1))]
    >>> risk = cl.EmpiricalRisk(nn.Linear(2, 1).double(), nn.MSELoss(), data)
    >>> risk.num_data, risk.dtype
    (8, torch.float64)
    >>> loss, grad = risk.loss_and_gradient()
    >>> grad.shape
    torch.Size([3])
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable[[Tensor, Any], Tensor],
        data: Iterable,
        *,
        params=None,
        process_group=None,
        check_deterministic: bool = True,
        output: Output = None,
    ):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
        self.process_group = resolve_group(model, process_group)
        model = unwrap_ddp(model)
        if isinstance(params, str):
            params = [params]
        if isinstance(params, list | tuple) and params and isinstance(params[0], str):
            params = [p[len("module.") :] if p.startswith("module.") else p for p in params]
        if params is EVALUATION_ONLY:  # every parameter, trainable or not (no gradients)
            named = list(model.named_parameters())
            if not named:
                raise ValueError("the model has no parameters.")
            names, tensors = [n for n, _ in named], [p for _, p in named]
        else:
            names, tensors = select_params(model, params)
        dtype, device = tensors[0].dtype, tensors[0].device
        for n_, p in zip(names, tensors):
            if not p.is_floating_point():
                raise TypeError(f"parameter {n_!r} is not floating point ({p.dtype}).")
            if p.dtype != dtype or p.device != device:
                raise ValueError(
                    f"parameter {n_!r} is {p.dtype} on {p.device} but {names[0]!r} is {dtype} on "
                    f"{device}: all selected parameters must share dtype and device."
                )
        self._graph_checked = False
        self.model = model
        self.loss_fn = loss_fn
        self.reduction = reduction_of(loss_fn)
        self.output = check_output(output)
        #: names and tensors of the selected parameters (the order of every flat vector)
        self.param_names: list[str] = names
        self.params: list[Tensor] = tensors
        self.dtype: torch.dtype = dtype
        self.device: torch.device = device
        #: number of selected parameter entries
        self.num_params = sum(p.numel() for p in tensors)
        if isinstance(data, Iterator):
            raise TypeError(
                "data is a one-shot iterator; curvlab passes over the data many times: pass a "
                "list of (X, y) batches or a DataLoader."
            )
        self.data = data
        error, sizes = None, []
        try:
            sizes = [_validate(b, i)[2] for i, b in enumerate(data)]
        except (TypeError, ValueError) as err:
            error = err
        count = torch.tensor([float(sum(sizes))], dtype=torch.float64, device=device)
        all_reduce_checked([count], error, self.process_group)
        #: sizes of this rank's batches
        self.batch_sizes: list[int] = sizes
        if count.item() == 0:
            raise ValueError("data is empty: pass at least one non-empty (X, y) batch.")
        #: number of samples over all ranks (the denominator of the empirical risk)
        self.num_data = int(count.item())
        #: number of samples of this rank's shard
        self.num_local_data = sum(sizes)
        warn_train_mode(model)
        if check_deterministic:
            self.check_deterministic()

    def __repr__(self) -> str:
        return (
            f"EmpiricalRisk({type(self.model).__name__}, {type(self.loss_fn).__name__}, "
            f"num_data={self.num_data}, batches={len(self.batch_sizes)}, "
            f"num_params={self.num_params}, {self.dtype}, {self.device})"
        )

    # -- data ------
    def prepare(self, X, y):
        """``(X, y)`` on the parameters' device; floating-point tensors in their dtype."""
        return _cast(X, self.device, self.dtype), _cast(y, self.device, self.dtype)

    def batches(self) -> Iterator[Batch]:
        """The batches of ``data``, prepared and weighted, in order.

        Raises if the data holds a different number of samples than at construction. Buffers
        that the forward passes of this pass update in train mode are restored when the
        iteration ends (BatchNorm running statistics and counters).
        """
        total = 0
        with keep_buffers(self.model):
            for i, batch in enumerate(self.data):
                X, y, b = _validate(batch, i)
                total += b
                w = b / self.num_data if self.reduction == "mean" else 1.0
                X, y = self.prepare(X, y)
                yield Batch(index=i, X=X, y=y, size=b, weight=w)
        if total != self.num_local_data:
            raise ValueError(
                f"the data held {self.num_local_data} samples at construction but {total} now: "
                "keep the data fixed (no drop_last with a changing size, no streaming)."
            )

    # -- forward ------
    def forward(self, batch: Batch, params: Mapping[str, Tensor] | None = None) -> Tensor:
        """The tensor the loss takes for ``batch``: the model's output through ``output``.

        With ``params`` (a dict name -> tensor) the model is called functionally with those
        parameters (``torch.func.functional_call``), for ``torch.func`` transforms.
        """
        if params is None:
            out = call_model(self.model, batch.X)
        else:
            with _no_running_stats(self.model):
                out = call_functional(self.model, params, batch.X)
        return model_output(out, (batch.X, batch.y), self.output)

    def batch_loss(self, out: Tensor, batch: Batch, *, functional: bool = False) -> Tensor:
        """``loss_fn(out, y)`` of one batch (unweighted), checked to be a scalar.

        With ``functional=True`` (inside ``torch.func`` forward-mode transforms) ``nn.MSELoss``
        is written out explicitly: ``F.mse_loss`` fails under forward-over-reverse on some torch
        versions ("ZeroTensors are immutable").
        """
        y = batch.y
        if functional and isinstance(self.loss_fn, nn.MSELoss) and isinstance(y, Tensor):
            sq = (out - y) ** 2
            loss = sq.mean() if self.reduction == "mean" else sq.sum()
        else:
            loss = self.loss_fn(out, y)
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            shape = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
            raise ValueError(
                f"loss_fn returned {shape} on batch {batch.index}, not a scalar: use "
                "reduction='mean' (or 'sum') so that the loss of a batch is one number."
            )
        return loss.reshape(())

    def weighted_loss(self, batch: Batch, params: Mapping[str, Tensor] | None = None) -> Tensor:
        """``w_b * loss_fn(f(X_b), y_b)``: batch ``b``'s term of the empirical risk.

        The first time it runs with gradients, the graph is checked for reentrant gradient
        checkpointing, which gives no (or no second) derivatives to the parameters inside the
        checkpointed blocks under ``torch.autograd.grad``: it raises with the fix.
        """
        if params is None and torch.is_grad_enabled() and not self._graph_checked:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                out = self.forward(batch, params)
                loss = batch.weight * self.batch_loss(out, batch)
            for w in caught:
                if "None of the inputs have requires_grad" in str(w.message):
                    raise ValueError(_REENTRANT)
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            if _has_reentrant_checkpoint(loss):
                raise ValueError(_REENTRANT)
            self._graph_checked = True
            return loss
        out = self.forward(batch, params)
        return batch.weight * self.batch_loss(out, batch, functional=params is not None)

    # -- values ------
    def loss_and_gradient(self) -> tuple[Tensor, Tensor]:
        """The empirical risk and its gradient (flat, in parameter order): one pass."""
        total = torch.zeros(1, dtype=self.dtype, device=self.device)
        grad = torch.zeros(self.num_params, dtype=self.dtype, device=self.device)
        error = None
        try:
            for b in self.batches():
                with torch.enable_grad():
                    loss = self.weighted_loss(b)
                    g = torch.autograd.grad(
                        loss, self.params, allow_unused=True, materialize_grads=True
                    )
                total += loss.detach()
                grad += flatten(g)
            if not bool(torch.isfinite(total).all()):
                self._raise_nonfinite_loss()
        except (TypeError, ValueError, RuntimeError) as err:
            error = err
        all_reduce_checked([total, grad], error, self.process_group)
        return total[0], grad

    def _raise_nonfinite_loss(self):
        with torch.no_grad():
            for b in self.batches():
                v = self.weighted_loss(b)
                if not bool(torch.isfinite(v)):
                    raise ValueError(f"the loss is not finite on batch {b.index} ({v.item()}).")

    def evaluate(self, metrics: Mapping[str, Callable] | None = None) -> Evaluation:
        """The empirical risk and ``metrics`` at the current parameters, without gradients.

        Parameters
        ----------
        metrics
            ``{"name": fn(output, y) -> scalar}`` (a batch mean, e.g. accuracy), weighted by
            batch size.
        """
        metrics = check_metrics(metrics)
        totals = torch.zeros(1 + len(metrics), dtype=torch.float64, device=self.device)
        error = None
        try:
            with torch.no_grad():
                for b in self.batches():
                    out = self.forward(b)
                    vals = [b.weight * _scalar(self.batch_loss(out, b), "loss_fn", b.index)]
                    vals += [
                        b.size * _scalar(f(out, b.y), f"metric {k!r}", b.index)
                        for k, f in metrics.items()
                    ]
                    totals += torch.stack([v.to(self.device) for v in vals])
        except (TypeError, ValueError, RuntimeError) as err:
            error = err
        all_reduce_checked([totals], error, self.process_group)
        totals = totals.cpu()
        if metrics:
            totals[1:] /= self.num_data
        return Evaluation(
            loss=totals[0],
            metrics={k: totals[i + 1] for i, k in enumerate(metrics)},
            num_data=self.num_data,
        )

    # -- determinism ------
    def _pass_record(self) -> tuple[list[Tensor], list[Tensor]]:
        losses, prints = [], []
        with torch.no_grad():
            for b in self.batches():
                losses.append(self.batch_loss(self.forward(b), b).detach().to(torch.float64))
                prints.append(fingerprint(b.X, b.y).to(self.device))
        return losses, prints

    def check_deterministic(self) -> None:
        """Raise a :class:`ValueError` unless two passes over the data give the same batches
        (inputs and targets) and the same loss on each batch; the message names the cause."""
        error = None
        try:
            self._check_deterministic_local()
        except ValueError as err:
            error = err
        # the error flag only (a tensor on the parameters' device: NCCL reduces no CPU tensor)
        all_reduce_checked([torch.zeros(1, device=self.device)], error, self.process_group)

    def _check_deterministic_local(self) -> None:
        l1, p1 = self._pass_record()
        l2, p2 = self._pass_record()
        if len(l1) != len(l2):
            raise ValueError(
                f"the data gave {len(l1)} batches on one pass and {len(l2)} on the next: pass a "
                "re-iterable with fixed batches."
            )
        tol = 1e-10 if self.dtype == torch.float64 else 1e-5
        L1, L2 = torch.stack(l1), torch.stack(l2)
        # every comparison on the device, then one transfer (not one per batch)
        same_shape = [a.shape == b.shape for a, b in zip(p1, p2)]
        differs = torch.stack(
            [
                ((a - b).abs() > 1e-9 * (a.abs() + 1.0)).any()
                if ok
                else torch.ones((), dtype=torch.bool, device=a.device)
                for a, b, ok in zip(p1, p2, same_shape)
            ]
        )
        flags = torch.stack(
            [~torch.isfinite(L1), (L1 - L2).abs() > tol * (L1.abs() + L2.abs()) + 1e-30, differs]
        ).tolist()
        if any(flags[0]):
            i = flags[0].index(True)
            raise ValueError(
                f"the loss is not finite on batch {i} ({L1[i].item()}): check that batch for "
                "NaN/Inf inputs or a diverged model."
            )
        loss_bad, data_bad = flags[1], flags[2]
        if any(data_bad):
            i = data_bad.index(True)
            raise ValueError(
                f"the data changed between two passes: batch {i} held different samples or "
                "values (in {} of {} batches). Likely causes: a shuffling DataLoader (use "
                "shuffle=False), a random augmentation or sampler (use fixed transforms), or "
                "a stream that is not re-iterable. Pass a fixed list of batches, or "
                "check_deterministic=False to skip this check (curvature products would then "
                "mix samples of different passes).".format(sum(data_bad), len(data_bad))
            )
        if any(loss_bad):
            i = loss_bad.index(True)
            drop = [
                n
                for n, m in self.model.named_modules()
                if isinstance(m, _RANDOM_MODULES) and m.training
            ]
            cause = (
                f"dropout layers {drop[:3]} in train mode (call model.eval(), or set their p=0)"
                if drop
                else "randomness inside the model's forward pass (dropout, stochastic depth, "
                "noise layers in train mode: call model.eval()) or a non-deterministic kernel"
            )
            raise ValueError(
                "two passes over the same data gave different losses on batch "
                f"{i} ({L1[i].item():.10g} vs {L2[i].item():.10g}): the model is not a fixed "
                f"function. Likely cause: {cause}. Pass check_deterministic=False to skip "
                "this check."
            )
