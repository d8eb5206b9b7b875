"""The element-wise activations the graph-based attribution methods recognise.

DeepLIFT replaces each of them by its rescale rule; LRP passes relevance through them unchanged.
One list, so that both methods accept the same models.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["ACTIVATION_FUNCTIONS", "ACTIVATION_METHODS", "ACTIVATION_MODULES"]

ACTIVATION_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Sigmoid, nn.Tanh, nn.Softplus, nn.Hardtanh, nn.Hardsigmoid, nn.Hardswish,
)  # fmt: skip
ACTIVATION_FUNCTIONS = {
    F.relu, torch.relu, F.relu6, F.leaky_relu, F.elu, F.selu, F.celu, F.gelu, F.silu, F.mish,
    torch.sigmoid, F.sigmoid, torch.tanh, F.tanh, F.softplus, F.hardtanh, F.hardsigmoid, F.hardswish,
}  # fmt: skip
ACTIVATION_METHODS = {"relu", "sigmoid", "tanh"}
