"""Study A's attention layer: ``nn.MultiheadAttention`` regression on random tensors."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from .._checks import check_int
from .._public import public_dir
from .._random import check_seed, make_generator
from .problem import Problem, Seed, loaders, seeded_init

__all__ = ["SelfAttention", "attention_regression"]
__dir__ = public_dir(globals())


class SelfAttention(nn.MultiheadAttention):
    """``nn.MultiheadAttention`` applied as self-attention, on the math path (twice differentiable).

    ``forward(x)`` is ``MultiheadAttention.forward(x, x, x, need_weights=True)[0]``: asking for
    the attention weights makes PyTorch compute attention with explicit matrix products and
    softmax instead of a fused ``scaled_dot_product_attention`` kernel, which has no double
    backward on some backends. The parameters keep PyTorch's names: ``in_proj_weight``
    (``3 E x E``: 768 entries for ``E = 16``), ``in_proj_bias``, ``out_proj.weight``,
    ``out_proj.bias``. Batch-first, like the study.

    Examples
    --------
    >>> import torch
    >>> from curvlab.problems import SelfAttention
    >>> attn = SelfAttention(16, 1)
    >>> attn.in_proj_weight.numel()
    768
    >>> attn(torch.zeros(2, 10, 16)).shape
    torch.Size([2, 10, 16])
    """

    def __init__(self, embed_dim: int = 16, num_heads: int = 1, **kwargs):
        kwargs.setdefault("batch_first", True)
        super().__init__(embed_dim, num_heads, **kwargs)

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        return super().forward(x, x, x, need_weights=True)[0]


def attention_regression(
    *,
    n_train: int = 10_000,
    n_test: int = 0,
    seq_len: int = 10,
    embed_dim: int = 16,
    num_heads: int = 1,
    batch_size: int = 64,
    seed: Seed = 0,
    dtype: torch.dtype = torch.float32,
) -> Problem:
    """Self-attention regression of study A: :class:`SelfAttention` fit to random targets, MSE.

    ``X`` and ``Y`` are independent standard normal tensors ``(n_train, seq_len, embed_dim)``
    ((10,000, 10, 16) in the study; pass a smaller ``n_train`` for a quick run). The study
    trains ``in_proj_weight`` (768 parameters) with a damped Newton method and ``out_proj``
    with gradient descent (lr 0.5), batch 64, 20 epochs.

    Draw order from the seed: the model's initialization, then ``X``, ``Y``, the test
    tensors, and the shuffling order of the train loader.

    Parameters
    ----------
    n_train, n_test
        Number of training and test sequences (``n_test=0``: no test loader, as in the study).
    seq_len, embed_dim, num_heads
        Shape of the sequences and of the attention layer.
    batch_size
        Batch size of the (shuffled) train loader.
    seed
        An int or a ``torch.Generator``; the global RNG is not used.
    dtype
        Floating dtype of model and data.

    Returns
    -------
    Problem
        ``model`` (:class:`SelfAttention`), ``loss_fn`` (``nn.MSELoss()``), loaders;
        ``info``: ``X``, ``Y`` (training tensors).

    Examples
    --------
    >>> from curvlab.problems import attention_regression
    >>> p = attention_regression(n_train=128)
    >>> X, Y = next(iter(p.train_loader))
    >>> tuple(X.shape), p.model.in_proj_weight.numel()
    ((64, 10, 16), 768)
    """
    n_train = check_int(n_train, "n_train")
    n_test = check_int(n_test, "n_test", minimum=0)
    seq_len = check_int(seq_len, "seq_len")
    embed_dim = check_int(embed_dim, "embed_dim")
    num_heads = check_int(num_heads, "num_heads")
    gen = make_generator(check_seed(seed, allow_none=False), share=True)[0]
    with seeded_init(gen):
        model = SelfAttention(embed_dim, num_heads).to(dtype)
    shape = (seq_len, embed_dim)
    X = torch.randn(n_train, *shape, generator=gen, dtype=dtype)
    Y = torch.randn(n_train, *shape, generator=gen, dtype=dtype)
    test = None
    if n_test:
        Xt = torch.randn(n_test, *shape, generator=gen, dtype=dtype)
        test = TensorDataset(Xt, torch.randn(n_test, *shape, generator=gen, dtype=dtype))
    train_loader, test_loader = loaders(TensorDataset(X, Y), test, batch_size=batch_size, seed=gen)
    return Problem(
        model,
        nn.MSELoss(),
        train_loader,
        test_loader,
        name="attention_regression",
        seed=seed,
        info={"X": X, "Y": Y},
    )
