"""LeNet-5 in the three variants the studies use."""

from __future__ import annotations

from torch import Tensor, nn

from .._public import public_dir

__all__ = ["LeNet5", "LENET_VARIANTS"]
__dir__ = public_dir(globals())

LENET_VARIANTS = ("tanh", "relu", "batchnorm")


class LeNet5(nn.Module):
    """LeNet-5: two 5x5 convolutions (6 and 16 maps), then 120 -> 84 -> ``num_classes``.

    ``variant`` selects the studies' versions:

    ``"tanh"``
        tanh and 2x2 average pooling (study C, the classic LeNet-5);
    ``"relu"``
        ReLU and 2x2 max pooling (study D);
    ``"batchnorm"``
        BatchNorm after every convolution and hidden linear layer, ReLU, max pooling
        (study A, on 3-channel input).

    The layers are the attributes ``conv1, conv2, fc1, fc2, fc3`` (plus ``bn1..bn4`` in the
    BatchNorm variant); ``fc3`` (84 -> 10: 850 parameters) is the last registered child and
    also :attr:`last_layer`, the block study A trains with a second-order method.

    Parameters
    ----------
    variant
        ``"tanh"``, ``"relu"`` or ``"batchnorm"``.
    in_channels
        1 (MNIST, grey CIFAR) or 3 (CIFAR-10).
    num_classes
        Size of the output.
    input_size
        Side of the square input: 32 (the original LeNet-5) or 28 (MNIST without resizing:
        the first convolution is then padded by 2 so the feature sizes are those of 32).

    Examples
    --------
    >>> import torch
    >>> from curvlab.problems import LeNet5
    >>> model = LeNet5("batchnorm", in_channels=3)
    >>> model(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    >>> sum(p.numel() for p in model.last_layer.parameters())
    850
    """

    def __init__(
        self,
        variant: str = "tanh",
        *,
        in_channels: int = 1,
        num_classes: int = 10,
        input_size: int = 32,
    ):
        super().__init__()
        if variant not in LENET_VARIANTS:
            raise ValueError(f"variant must be one of {LENET_VARIANTS}, got {variant!r}.")
        if input_size not in (28, 32):
            raise ValueError(
                f"input_size must be 28 or 32, got {input_size!r}; resize the images "
                "(curvlab.problems.digits(size=32) or vision(size=32))."
            )
        self.variant = variant
        bn = variant == "batchnorm"
        self.act = nn.Tanh() if variant == "tanh" else nn.ReLU()
        self.pool = nn.AvgPool2d(2) if variant == "tanh" else nn.MaxPool2d(2)
        self.conv1 = nn.Conv2d(in_channels, 6, 5, padding=2 if input_size == 28 else 0)
        self.bn1 = nn.BatchNorm2d(6) if bn else nn.Identity()
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.bn2 = nn.BatchNorm2d(16) if bn else nn.Identity()
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.bn3 = nn.BatchNorm1d(120) if bn else nn.Identity()
        self.fc2 = nn.Linear(120, 84)
        self.bn4 = nn.BatchNorm1d(84) if bn else nn.Identity()
        self.fc3 = nn.Linear(84, num_classes)

    @property
    def last_layer(self) -> nn.Linear:
        """The output layer ``fc3``."""
        return self.fc3

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool(self.act(self.bn1(self.conv1(x))))
        x = self.pool(self.act(self.bn2(self.conv2(x))))
        x = x.flatten(1)
        x = self.act(self.bn3(self.fc1(x)))
        x = self.act(self.bn4(self.fc2(x)))
        return self.fc3(x)
