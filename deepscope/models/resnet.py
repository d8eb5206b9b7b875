"""A small residual network with BatchNorm (He et al. 2016, "Deep residual learning").

Each basic block computes ``y = φ(BN(conv(φ(BN(conv(x))))) + s(x))`` where the shortcut ``s`` is
the identity, or a strided 1x1 convolution plus BatchNorm when the shape changes. A stem
convolution, ``len(channels)`` stages of ``blocks_per_stage`` blocks (stride 2 from the second
stage on), global average pooling and a linear classifier complete the network. Images
``(C, H, W)`` use 2-D layers; sequences ``(C, L)`` use the same design with 1-D layers.
Residual additions are out of place and every activation is its own module, so hooks and
attribution methods see each use separately.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from deepscope._validation import check_int
from deepscope.models._layers import check_classes, check_input_shape, check_widths, make_activation

__all__ = ["ResNet", "BasicBlock", "resnet18"]


def _layers(ndim: int) -> tuple[type[nn.Module], type[nn.Module], type[nn.Module]]:
    if ndim == 2:
        return nn.Conv2d, nn.BatchNorm2d, nn.AdaptiveAvgPool2d
    return nn.Conv1d, nn.BatchNorm1d, nn.AdaptiveAvgPool1d


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm and a residual addition (He et al. 2016, Fig. 2)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, ndim: int, activation: str) -> None:
        super().__init__()
        conv, norm, _ = _layers(ndim)
        self.conv1 = conv(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = norm(out_channels)
        self.act1 = make_activation(activation, "ResNet")
        self.conv2 = conv(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = norm(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                conv(in_channels, out_channels, 1, stride=stride, bias=False), norm(out_channels)
            )
        self.act2 = make_activation(activation, "ResNet")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + self.shortcut(x))


class ResNet(nn.Module):
    """Stem -> stages of :class:`BasicBlock` -> global average pool -> Linear.

    Args:
        input_shape: ``(C, H, W)`` images (2-D layers) or ``(C, L)`` sequences (1-D layers).
        num_classes: number of logits.
        channels: channels of each stage, e.g. ``(16, 32)``; stage ``i > 0`` halves the resolution.
        blocks_per_stage: residual blocks per stage.
        activation: activation name (see :data:`deepscope.models.ACTIVATIONS`).

    Inputs ``(batch, *input_shape)`` give logits ``(batch, num_classes)``.

    Example:
        >>> net = ResNet((1, 8, 8), 10)
        >>> net(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        channels: Sequence[int] = (16, 32),
        blocks_per_stage: int = 1,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        shape = check_input_shape(input_shape, "ResNet", ndim=(2, 3))
        classes = check_classes(num_classes, "ResNet")
        stages = check_widths(channels, "channels", "ResNet", allow_empty=False)
        repeats = check_int(blocks_per_stage, "blocks_per_stage", "ResNet", minimum=1)
        ndim = len(shape) - 1
        conv, norm, pool = _layers(ndim)
        self.stem = nn.Sequential(
            conv(shape[0], stages[0], 3, padding=1, bias=False), norm(stages[0]), make_activation(activation, "ResNet")
        )
        blocks: list[nn.Module] = []
        in_channels = stages[0]
        for index, out_channels in enumerate(stages):
            for repeat in range(repeats):
                stride = 2 if index > 0 and repeat == 0 else 1
                blocks.append(BasicBlock(in_channels, out_channels, stride, ndim, activation))
                in_channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.pool = pool(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(in_channels, classes)
        self.input_shape = shape
        self.num_classes = classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.pool(self.blocks(self.stem(x)))))


def resnet18(num_classes: int = 10, in_channels: int = 3, input_size: int = 32) -> ResNet:
    """The CIFAR-style ResNet-18 (He et al. 2016, Table 1, with the 3x3 stem of their CIFAR networks).

    A 3x3 stem convolution to 64 channels (no 7x7 convolution, no max pool), four stages of two
    basic blocks with 64, 128, 256 and 512 channels (stride 2 from the second stage), global
    average pooling and a linear classifier: 17 convolutions + 1 linear layer = 18 weight layers.
    With 3 input channels and 10 classes it has 11,173,962 parameters, the standard figure of the
    CIFAR ResNet-18.

    Args:
        num_classes: number of logits.
        in_channels: image channels (3 for RGB).
        input_size: image height and width (32 for CIFAR); global pooling makes any size >= 8 work.

    Returns:
        A freshly initialised :class:`ResNet` (weights from torch's global generator).

    Example:
        >>> net = resnet18().eval()
        >>> net(torch.zeros(1, 3, 32, 32)).shape
        torch.Size([1, 10])
    """
    channels = check_int(in_channels, "in_channels", "resnet18", minimum=1)
    size = check_int(input_size, "input_size", "resnet18", minimum=8)
    return ResNet((channels, size, size), num_classes, channels=(64, 128, 256, 512), blocks_per_stage=2)
