"""A small 1-D convolutional network for sequences: one-hot DNA ``(n, 4, L)`` or mnist1d ``(n, 1, 40)``.

Convolution blocks over the position axis (as in DeepBind, Alipanahi et al. 2015, and Basset,
Kelley et al. 2016): ``Conv1d(k, padding=k//2) -> (BatchNorm1d) -> activation -> MaxPool1d(2)``,
then either a flattened fully connected head (position-aware, the default) or a global max/mean
pool over positions (position-invariant motif detectors). The network is a plain ``nn.Sequential``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from deepscope._validation import check_choice, check_int
from deepscope.errors import invalid_parameter
from deepscope.models._layers import check_classes, check_dropout, check_input_shape, check_widths, make_activation

__all__ = ["CNN1d"]


class _GlobalPool1d(nn.Module):
    """Max or mean over the position axis: ``(batch, C, L) -> (batch, C)``."""

    def __init__(self, reduction: str) -> None:
        super().__init__()
        self.reduction = reduction

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.amax(dim=-1) if self.reduction == "max" else x.mean(dim=-1)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


class CNN1d(nn.Sequential):
    """[Conv1d -> (BatchNorm1d) -> activation -> MaxPool1d] x len(channels) -> pooling -> MLP head.

    Args:
        input_shape: ``(channels, length)`` of one sequence (4 for one-hot DNA, 1 for mnist1d).
        num_classes: number of logits.
        channels: output channels of each convolution block.
        kernel_size: odd kernel size (padding keeps the length).
        hidden: width of the hidden fully connected layer (0 for none).
        activation: activation name (see :data:`deepscope.models.ACTIVATIONS`).
        dropout: dropout before the classifier layers.
        batch_norm: add BatchNorm1d after each convolution (default True).
        pooling: "flatten" (keep positions), "max" or "mean" (global pooling over positions).

    Inputs ``(batch, C, L)`` give logits ``(batch, num_classes)``.

    Example:
        >>> net = CNN1d((4, 20), 2)
        >>> net(torch.zeros(3, 4, 20)).shape
        torch.Size([3, 2])
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        channels: Sequence[int] = (32, 32),
        kernel_size: int = 5,
        hidden: int = 64,
        activation: str = "relu",
        dropout: float = 0.0,
        batch_norm: bool = True,
        pooling: str = "flatten",
    ) -> None:
        in_channels, length = check_input_shape(input_shape, "CNN1d", ndim=(2,))
        classes = check_classes(num_classes, "CNN1d")
        blocks = check_widths(channels, "channels", "CNN1d", allow_empty=False)
        kernel = check_int(kernel_size, "kernel_size", "CNN1d", minimum=1)
        if kernel % 2 == 0:
            raise invalid_parameter("kernel_size", "CNN1d", "an odd int >= 1", kernel_size)
        hidden_width = check_int(hidden, "hidden", "CNN1d", minimum=0)
        rate = check_dropout(dropout, "CNN1d")
        check_choice(pooling, "pooling", "CNN1d", ("flatten", "max", "mean"))
        layers: list[nn.Module] = []
        for out_channels in blocks:
            layers.append(nn.Conv1d(in_channels, out_channels, kernel, padding=kernel // 2))
            if batch_norm:
                layers.append(nn.BatchNorm1d(out_channels))
            layers.append(make_activation(activation, "CNN1d"))
            if length >= 2:
                layers.append(nn.MaxPool1d(2))
                length //= 2
            in_channels = out_channels
        if pooling == "flatten":
            layers.append(nn.Flatten())
            features = in_channels * length
        else:
            layers.append(_GlobalPool1d(pooling))
            features = in_channels
        if rate > 0:
            layers.append(nn.Dropout(rate))
        if hidden_width:
            layers += [nn.Linear(features, hidden_width), make_activation(activation, "CNN1d")]
            if rate > 0:
                layers.append(nn.Dropout(rate))
            features = hidden_width
        layers.append(nn.Linear(features, classes))
        super().__init__(*layers)
        self.input_shape = (int(input_shape[0]), int(input_shape[1]))
        self.num_classes = classes
