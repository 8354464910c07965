"""A small CIFAR-style ResNet (the stand-in for study B's ResNet18)."""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral

from torch import Tensor, nn

from .._checks import check_int
from .._public import public_dir

__all__ = ["ResNet", "BasicBlock"]
__dir__ = public_dir(globals())


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm and ReLU, plus the (projected) identity shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn1(self.conv1(x)).relu()
        out = self.bn2(self.conv2(out))
        return (out + self.shortcut(x)).relu()


class ResNet(nn.Module):
    """CIFAR-style ResNet: a 3x3 stem, stages of ``BasicBlock``, global average pooling.

    ``ResNet(widths=(64, 128, 256, 512), blocks=(2, 2, 2, 2))`` is the CIFAR ResNet18 of
    study B; the defaults (``widths=(16, 32, 64)``, one block per stage, 76k parameters)
    are a small version that trains on CPU in seconds. Every stage after the first halves the
    resolution.

    Parameters
    ----------
    in_channels
        Channels of the input images.
    num_classes
        Size of the output.
    widths
        Channels of each stage.
    blocks
        Blocks per stage: an int (the same for every stage) or one int per stage.

    Examples
    --------
    >>> import torch
    >>> from curvlab.problems import ResNet
    >>> ResNet(in_channels=1)(torch.zeros(2, 1, 16, 16)).shape
    torch.Size([2, 10])
    """

    def __init__(
        self,
        *,
        in_channels: int = 3,
        num_classes: int = 10,
        widths: Sequence[int] = (16, 32, 64),
        blocks: int | Sequence[int] = 1,
    ):
        super().__init__()
        widths = tuple(widths)
        if not widths:
            raise ValueError("widths must be a non-empty sequence of positive ints, got ().")
        try:
            widths = tuple(check_int(w, f"widths[{i}]") for i, w in enumerate(widths))
        except (TypeError, ValueError) as e:  # the same error, with the whole sequence
            raise type(e)(
                f"widths must be a non-empty sequence of positive ints, got {widths}: {e}"
            ) from None
        if isinstance(blocks, Integral) and not isinstance(blocks, bool):
            blocks = (blocks,) * len(widths)
        expected = f"blocks must be a positive int or one positive int per stage ({len(widths)})"
        try:
            blocks = tuple(blocks)
        except TypeError:
            raise TypeError(f"{expected}, got {type(blocks).__name__}.") from None
        if len(blocks) != len(widths):
            raise ValueError(f"{expected}, got {blocks!r}.")
        try:
            blocks = tuple(check_int(b, f"blocks[{i}]") for i, b in enumerate(blocks))
        except (TypeError, ValueError) as e:
            raise type(e)(f"{expected}, got {blocks!r}: {e}") from None
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(),
        )
        stages = []
        c_in = widths[0]
        for i, (w, b) in enumerate(zip(widths, blocks, strict=True)):
            layers = []
            for j in range(b):
                stride = 2 if (i > 0 and j == 0) else 1
                layers.append(BasicBlock(c_in, w, stride))
                c_in = w
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stages(self.stem(x))
        return self.fc(self.pool(x).flatten(1))
