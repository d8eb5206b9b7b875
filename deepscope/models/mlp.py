"""A configurable multilayer perceptron (fully connected network) for any input shape.

The network computes ``f(x) = W_L φ(... φ(W_1 vec(x) + b_1) ...) + b_L`` (Rosenblatt 1958;
Rumelhart, Hinton & Williams 1986): the input is flattened, passed through ``len(widths)``
hidden layers of the chosen activation φ (optionally followed by BatchNorm and Dropout), and a
final linear layer gives ``num_classes`` logits. It is a plain ``nn.Sequential`` so that exact
analyses of piecewise-linear networks (linear regions, layer-wise bounds) can walk its layers.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from deepscope.models._layers import check_classes, check_dropout, check_input_shape, check_widths, make_activation

__all__ = ["MLP"]


class MLP(nn.Sequential):
    """Flatten -> [Linear -> (BatchNorm1d) -> activation -> (Dropout)] x len(widths) -> Linear.

    Args:
        input_shape: shape of one example (any number of dims; it is flattened), e.g. ``(30,)``
            or ``(1, 8, 8)``.
        num_classes: output width (number of logits).
        widths: hidden layer widths, e.g. ``(128, 64)``; ``()`` gives a linear model.
        activation: "relu" (default), "leaky_relu", "tanh", "sigmoid", "gelu", "silu", "elu",
            "softplus" or "identity".
        dropout: dropout probability after each hidden activation (0 disables it).
        batch_norm: add BatchNorm1d after each hidden linear layer.

    Inputs ``(batch, *input_shape)`` give logits ``(batch, num_classes)``.

    Example:
        >>> import torch
        >>> net = MLP((4,), 3, widths=(8,))
        >>> net(torch.zeros(2, 4)).shape
        torch.Size([2, 3])
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        widths: Sequence[int] = (128, 64),
        activation: str = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
    ) -> None:
        shape = check_input_shape(input_shape, "MLP", ndim=(1, 2, 3, 4))
        classes = check_classes(num_classes, "MLP")
        hidden = check_widths(widths, "widths", "MLP")
        rate = check_dropout(dropout, "MLP")
        layers: list[nn.Module] = [nn.Flatten()]
        fan_in = 1
        for size in shape:
            fan_in *= size
        for width in hidden:
            layers.append(nn.Linear(fan_in, width))
            if batch_norm:
                layers.append(nn.BatchNorm1d(width))
            layers.append(make_activation(activation, "MLP"))
            if rate > 0:
                layers.append(nn.Dropout(rate))
            fan_in = width
        layers.append(nn.Linear(fan_in, classes))
        super().__init__(*layers)
        self.input_shape = shape
        self.num_classes = classes
