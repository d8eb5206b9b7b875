"""Non-finite weights: listed by name, tied parameters once, infinite buffers allowed, refused by layer."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deepscope._finite import check_finite_model, describe_nonfinite, nonfinite_tensors
from deepscope.errors import NonFiniteError


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


def test_a_finite_model_passes():
    assert nonfinite_tensors(_net()) == []
    check_finite_model(_net(), "anything")


def test_bad_parameters_are_counted_and_named_with_their_layer():
    net = _net()
    with torch.no_grad():
        net[2].weight[0, :3] = float("nan")
        net[0].bias[1] = float("inf")
    assert nonfinite_tensors(net) == [("0.bias", 1, 4), ("2.weight", 3, 8)]
    text = describe_nonfinite(net, nonfinite_tensors(net))
    assert text == "'0.bias' (layer '0', Linear) has 1 of 4 values NaN or infinite; so do 1 more tensor(s): '2.weight'"
    with pytest.raises(NonFiniteError, match=r"^ntk: the model's weights are not finite: '0.bias' \(layer '0'"):
        check_finite_model(net, "ntk")


def test_buffers_may_be_infinite_but_not_nan_and_tied_weights_count_once():
    net = _net()
    net.register_buffer("mask", torch.tensor([0.0, -float("inf")]))  # an additive attention mask
    assert nonfinite_tensors(net) == []
    net.mask[0] = float("nan")
    assert nonfinite_tensors(net) == [("mask", 1, 2)]
    tied = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 2, bias=False))
    tied[1].weight = tied[0].weight
    with torch.no_grad():
        tied[0].weight[0, 0] = float("nan")
    assert [name for name, _, _ in nonfinite_tensors(tied)] == ["0.weight"]
