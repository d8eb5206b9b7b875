"""A Basset-style CNN for one-hot DNA ``(batch, 4, L)``: three convolution blocks and a dense head.

Kelley, Snoek & Rinn (2016), "Basset: learning the regulatory code of the accessible genome with
deep convolutional neural networks", Genome Research 26:990. The paper's network on 600 bp:

    Conv1d(4, 300, 19) -> BatchNorm1d -> ReLU -> MaxPool1d(3)
    Conv1d(300, 200, 11) -> BatchNorm1d -> ReLU -> MaxPool1d(4)
    Conv1d(200, 200, 7) -> BatchNorm1d -> ReLU -> MaxPool1d(4)
    Flatten -> [Linear(., 1000) -> ReLU -> Dropout(0.3)] x 2 -> Linear(1000, 164) -> Sigmoid

(164 cell types, one accessibility probability each). Here the kernel sizes and pools are the
paper's by default while the widths are small (fast tests); :data:`PAPER_SIZES` holds the paper's
widths: ``Basset((4, 600), 164, **PAPER_SIZES, sigmoid=True)`` is the published network.
Convolutions are unpadded ("valid", as in the paper) unless ``padding="same"``. The output is
logits by default (what deepscope's analyses read); ``sigmoid=True`` adds the paper's sigmoid.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from deepscope._validation import check_choice
from deepscope.errors import invalid_parameter
from deepscope.models._layers import check_classes, check_dropout, check_input_shape, check_widths

__all__ = ["Basset", "PAPER_SIZES"]

PAPER_SIZES: dict[str, Any] = {"channels": (300, 200, 200), "hidden": (1000, 1000), "dropout": 0.3}
"""The widths of Kelley et al. (2016) (kernel sizes and pools are already the paper's defaults)."""


class Basset(nn.Sequential):
    """[Conv1d -> BatchNorm1d -> ReLU -> MaxPool1d] x 3 -> Flatten -> [Linear -> ReLU -> Dropout] x 2 -> Linear.

    Args:
        input_shape: ``(4, L)`` for one-hot DNA of length ``L`` (any channel count is accepted).
        num_classes: number of targets (164 cell types in the paper).
        channels: output channels of the convolution blocks (paper: 300, 200, 200).
        kernel_sizes: kernel size of each convolution (paper: 19, 11, 7).
        pools: max-pool size (and stride) after each convolution (paper: 3, 4, 4).
        hidden: widths of the fully connected layers (paper: 1000, 1000).
        dropout: dropout after each fully connected layer (paper: 0.3).
        padding: "valid" (no padding, the paper) or "same" (keeps the length before pooling).
        sigmoid: end with a sigmoid (the paper's probabilities) instead of logits.

    Inputs ``(batch, C, L)`` give ``(batch, num_classes)``.

    Example:
        >>> import torch
        >>> net = Basset((4, 200), 3).eval()
        >>> net(torch.zeros(2, 4, 200)).shape
        torch.Size([2, 3])
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        channels: Sequence[int] = (32, 16, 16),
        kernel_sizes: Sequence[int] = (19, 11, 7),
        pools: Sequence[int] = (3, 4, 4),
        hidden: Sequence[int] = (32, 32),
        dropout: float = 0.3,
        padding: str = "valid",
        sigmoid: bool = False,
    ) -> None:
        owner = "Basset"
        in_channels, length = check_input_shape(input_shape, owner, ndim=(2,))
        classes = check_classes(num_classes, owner)
        widths = check_widths(channels, "channels", owner, allow_empty=False)
        kernels = check_widths(kernel_sizes, "kernel_sizes", owner, allow_empty=False)
        pool_sizes = check_widths(pools, "pools", owner, allow_empty=False)
        dense = check_widths(hidden, "hidden", owner)
        rate = check_dropout(dropout, owner)
        check_choice(padding, "padding", owner, ("valid", "same"))
        if not isinstance(sigmoid, bool):
            raise invalid_parameter("sigmoid", owner, "a bool", sigmoid)
        if not len(widths) == len(kernels) == len(pool_sizes):
            raise invalid_parameter(
                "kernel_sizes/pools",
                owner,
                f"one kernel size and one pool per convolution ({len(widths)} channels)",
                (tuple(kernels), tuple(pool_sizes)),
            )
        layers: list[nn.Module] = []
        for out_channels, kernel, pool in zip(widths, kernels, pool_sizes):
            if padding == "same" and kernel % 2 == 0:
                raise invalid_parameter("kernel_sizes", owner, "odd kernel sizes with padding='same'", kernels)
            pad = kernel // 2 if padding == "same" else 0
            length = length + 2 * pad - kernel + 1
            if length < 1:
                raise invalid_parameter(
                    "input_shape",
                    owner,
                    f"sequences long enough for the kernels {kernels} and pools {pool_sizes}",
                    input_shape,
                )
            layers += [
                nn.Conv1d(in_channels, out_channels, kernel, padding=pad),
                nn.BatchNorm1d(out_channels),
                nn.ReLU(),
            ]
            if length // pool < 1:
                raise invalid_parameter(
                    "input_shape",
                    owner,
                    f"sequences long enough for the kernels {kernels} and pools {pool_sizes}",
                    input_shape,
                )
            layers.append(nn.MaxPool1d(pool))
            length //= pool
            in_channels = out_channels
        layers.append(nn.Flatten())
        features = in_channels * length
        for width in dense:
            layers += [nn.Linear(features, width), nn.ReLU()]
            if rate > 0:
                layers.append(nn.Dropout(rate))
            features = width
        layers.append(nn.Linear(features, classes))
        if sigmoid:
            layers.append(nn.Sigmoid())
        super().__init__(*layers)
        self.input_shape = (int(input_shape[0]), int(input_shape[1]))
        self.num_classes = classes
