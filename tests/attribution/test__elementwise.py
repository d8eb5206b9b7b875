"""One list of element-wise activations, shared by DeepLIFT and LRP."""

from __future__ import annotations

import torch
from torch import nn

from deepscope.attribution import deeplift, lrp
from deepscope.attribution._elementwise import ACTIVATION_FUNCTIONS, ACTIVATION_METHODS, ACTIVATION_MODULES


def test_the_lists_hold_element_wise_functions_only():
    x = torch.randn(5, 7)
    for module in ACTIVATION_MODULES:
        out = module()(x)
        assert out.shape == x.shape
        assert torch.allclose(module()(x[:, :3]), out[:, :3])  # no mixing between features
    assert {torch.relu, torch.sigmoid, torch.tanh} <= ACTIVATION_FUNCTIONS
    assert all(callable(getattr(torch.Tensor, name)) for name in ACTIVATION_METHODS)


def test_both_graph_methods_accept_every_listed_module():
    # LRP's epsilon rule treats an activation as pass-through, DeepLIFT as a rescale; both must accept it
    x = torch.randn(3, 4)
    for module in (nn.ReLU, nn.Tanh, nn.Sigmoid):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 5), module(), nn.Linear(5, 2))
        assert torch.isfinite(deeplift(model, x, 0).values).all()
        assert torch.isfinite(lrp(model, x, 0).values).all()
