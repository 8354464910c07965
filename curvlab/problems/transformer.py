"""A small Transformer encoder with explicit ("math") attention, so that HVPs work through it.

PyTorch's fused attention kernels (``scaled_dot_product_attention``'s flash and
memory-efficient backends, the fast path of ``nn.TransformerEncoderLayer``) have no double
backward. Here attention is written out as ``softmax(Q K^T / sqrt(d)) V`` with ordinary ops,
which autograd and ``torch.func`` differentiate twice on every device.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .._checks import check_int
from .._public import public_dir

__all__ = ["MathMultiheadAttention", "EncoderBlock", "Transformer"]
__dir__ = public_dir(globals())


class MathMultiheadAttention(nn.Module):
    r"""Multi-head self-attention computed explicitly (twice differentiable).

    .. math:: \mathrm{head}_h = \mathrm{softmax}\big(Q_h K_h^\top / \sqrt{d_h} + M\big) V_h

    with ``Q, K, V`` from one ``in_proj`` linear layer (``3 d_model`` outputs), ``M`` the causal
    mask (``-inf`` above the diagonal) when ``causal=True``, and the heads concatenated and
    mapped by ``out_proj``.

    Parameters
    ----------
    d_model
        Embedding size (divisible by ``nhead``).
    nhead
        Number of heads.
    causal
        Mask attention to later positions (language modelling).
    bias
        Biases in the projections.

    Examples
    --------
    >>> import torch
    >>> from curvlab.problems import MathMultiheadAttention
    >>> attn = MathMultiheadAttention(8, 2)
    >>> attn(torch.zeros(3, 5, 8)).shape
    torch.Size([3, 5, 8])
    """

    def __init__(self, d_model: int, nhead: int, *, causal: bool = False, bias: bool = True):
        super().__init__()
        if d_model % nhead != 0:
            raise ValueError(f"d_model ({d_model}) must be divisible by nhead ({nhead}).")
        self.d_model, self.nhead, self.causal = d_model, nhead, causal
        self.in_proj = nn.Linear(d_model, 3 * d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        B, T, D = x.shape
        h, dh = self.nhead, D // self.nhead
        q, k, v = self.in_proj(x).view(B, T, 3, h, dh).permute(2, 0, 3, 1, 4)  # each (B,h,T,dh)
        scores = q @ k.transpose(-2, -1) / math.sqrt(dh)
        if self.causal:
            mask = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
            scores = scores.masked_fill(mask, float("-inf"))
        out = torch.softmax(scores, dim=-1) @ v  # (B, h, T, dh)
        return self.out_proj(out.transpose(1, 2).reshape(B, T, D))


class EncoderBlock(nn.Module):
    """Pre-norm Transformer encoder block: ``x + attn(LN(x))``, then ``x + FFN(LN(x))``."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, *, causal: bool = False):
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.attn = MathMultiheadAttention(d_model, nhead, causal=causal)
        self.norm2 = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(
            nn.Linear(d_model, dim_feedforward), nn.GELU(), nn.Linear(dim_feedforward, d_model)
        )

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ff(self.norm2(x))


def sinusoidal_positions(max_len: int, d_model: int) -> Tensor:
    """The fixed sine/cosine positional encoding of Vaswani et al. (2017), ``(max_len, d)``."""
    pos = torch.arange(max_len, dtype=torch.float64).unsqueeze(1)
    div = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float64) * (-math.log(1e4) / d_model))
    pe = torch.zeros(max_len, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div[: d_model // 2])
    return pe.float()


class Transformer(nn.Module):
    """Small Transformer encoder on sequences of tokens or feature vectors, math attention.

    Input: token ids ``(B, T)`` (with ``vocab_size``) or features ``(B, T, in_features)``
    (with ``in_features``; images ``(B, C, H, W)`` are read as ``H`` tokens of ``C W``
    features, row by row); a sinusoidal positional encoding is added to the embedding, then
    ``num_layers`` pre-norm ``EncoderBlock`` s and a final LayerNorm. With
    ``pool="mean"`` the output is ``(B, out_features)`` from the mean over positions
    (classification); with ``pool=None`` it is ``(B, T, out_features)`` (e.g. next-token
    logits with ``causal=True``). No dropout, so two passes agree (curvature operators check
    it).

    Parameters
    ----------
    in_features, vocab_size
        Exactly one: the size of the input feature vectors, or of the vocabulary.
    out_features
        Output size per sequence (or per position).
    d_model, nhead, num_layers, dim_feedforward
        Width, heads, depth and hidden size of the feed-forward layers.
    max_len
        Longest sequence accepted.
    causal
        Causal attention mask.
    pool
        ``"mean"`` or ``None``.

    Examples
    --------
    >>> import torch
    >>> from curvlab.problems import Transformer
    >>> model = Transformer(in_features=8, out_features=10)
    >>> model(torch.zeros(4, 8, 8)).shape
    torch.Size([4, 10])
    """

    def __init__(
        self,
        *,
        in_features: int | None = None,
        vocab_size: int | None = None,
        out_features: int = 10,
        d_model: int = 32,
        nhead: int = 2,
        num_layers: int = 2,
        dim_feedforward: int = 64,
        max_len: int = 256,
        causal: bool = False,
        pool: str | None = "mean",
    ):
        super().__init__()
        if (in_features is None) == (vocab_size is None):
            raise ValueError("give exactly one of in_features (feature vectors) or vocab_size.")
        if pool not in ("mean", None):
            raise ValueError(f"pool must be 'mean' or None, got {pool!r}.")
        num_layers = check_int(num_layers, "num_layers")
        self.pool = pool
        self.embed: nn.Module = (
            nn.Embedding(vocab_size, d_model)
            if vocab_size is not None
            else nn.Linear(in_features, d_model)
        )
        self.register_buffer("positions", sinusoidal_positions(max_len, d_model), persistent=False)
        self.blocks = nn.Sequential(
            *(
                EncoderBlock(d_model, nhead, dim_feedforward, causal=causal)
                for _ in range(num_layers)
            )
        )
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, out_features)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 4:  # images (B, C, H, W): one token per row, C * W features
            B, C, H, W = x.shape
            x = x.permute(0, 2, 1, 3).reshape(B, H, C * W)
        T = x.shape[1]
        if T > self.positions.shape[0]:
            raise ValueError(f"sequence length {T} exceeds max_len={self.positions.shape[0]}.")
        h = self.embed(x)
        h = h + self.positions[:T].to(h.dtype)
        h = self.norm(self.blocks(h))
        if self.pool == "mean":
            h = h.mean(dim=1)
        return self.head(h)
