"""A small 2-D convolutional network for images (digits 8x8, planted 16x16 patches, ...).

Convolution, nonlinearity and max-pooling blocks (LeCun et al. 1998, "Gradient-based learning
applied to document recognition") followed by a fully connected classifier. Each block is
``Conv2d(k, padding=k//2) -> (BatchNorm2d) -> activation -> MaxPool2d(2)``; pooling is skipped
once the feature map is smaller than 2 pixels, so the same defaults work from 4x4 to 64x64
inputs. The network is a plain ``nn.Sequential``.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from deepscope._validation import check_int
from deepscope.errors import invalid_parameter
from deepscope.models._layers import check_classes, check_dropout, check_input_shape, check_widths, make_activation

__all__ = ["CNN2d"]


class CNN2d(nn.Sequential):
    """[Conv2d -> (BatchNorm2d) -> activation -> MaxPool2d] x len(channels) -> Flatten -> MLP head.

    Args:
        input_shape: ``(channels, height, width)`` of one image.
        num_classes: number of logits.
        channels: output channels of each convolution block, e.g. ``(16, 32)``.
        kernel_size: odd convolution kernel size (padding keeps the spatial size).
        hidden: width of the hidden fully connected layer (0 for none).
        activation: activation name (see :data:`deepscope.models.ACTIVATIONS`).
        dropout: dropout before the classifier layers (0 disables it).
        batch_norm: add BatchNorm2d after each convolution (default True: ~98% on digits in 10 epochs).

    Inputs ``(batch, C, H, W)`` give logits ``(batch, num_classes)``.

    Example:
        >>> import torch
        >>> net = CNN2d((1, 8, 8), 10)
        >>> net(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        channels: Sequence[int] = (16, 32),
        kernel_size: int = 3,
        hidden: int = 64,
        activation: str = "relu",
        dropout: float = 0.0,
        batch_norm: bool = True,
    ) -> None:
        in_channels, height, width = check_input_shape(input_shape, "CNN2d", ndim=(3,))
        classes = check_classes(num_classes, "CNN2d")
        blocks = check_widths(channels, "channels", "CNN2d", allow_empty=False)
        kernel = check_int(kernel_size, "kernel_size", "CNN2d", minimum=1)
        if kernel % 2 == 0:
            raise invalid_parameter("kernel_size", "CNN2d", "an odd int >= 1", kernel_size)
        hidden_width = check_int(hidden, "hidden", "CNN2d", minimum=0)
        rate = check_dropout(dropout, "CNN2d")
        layers: list[nn.Module] = []
        for out_channels in blocks:
            layers.append(nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_channels))
            layers.append(make_activation(activation, "CNN2d"))
            if height >= 2 and width >= 2:
                layers.append(nn.MaxPool2d(2))
                height, width = height // 2, width // 2
            in_channels = out_channels
        layers.append(nn.Flatten())
        features = in_channels * height * width
        if rate > 0:
            layers.append(nn.Dropout(rate))
        if hidden_width:
            layers += [nn.Linear(features, hidden_width), make_activation(activation, "CNN2d")]
            if rate > 0:
                layers.append(nn.Dropout(rate))
            features = hidden_width
        layers.append(nn.Linear(features, classes))
        super().__init__(*layers)
        self.input_shape = (int(input_shape[0]), int(input_shape[1]), int(input_shape[2]))
        self.num_classes = classes
