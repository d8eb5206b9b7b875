"""The position-local rules of ISM's receptive-field path, one operation at a time."""

import math

import pytest
import torch
import torch.fx as fx
from torch import nn

from deepscope.attribution._ism_rules import is_inplace, rule_for, tensor_nodes


def traced(module, length=20, n=2):
    """The traced graph, its node values on random inputs, and the node after the input."""
    graph = fx.symbolic_trace(module)
    ref = {}

    class Recorder(fx.Interpreter):
        def run_node(self, node):
            ref[node] = super().run_node(node)
            return ref[node]

    Recorder(graph).run(torch.randn(n, 4, length))
    nodes = list(graph.graph.nodes)
    return graph, ref, nodes


def rule_of(module, index=1, length=20):
    graph, ref, nodes = traced(module, length)
    node = nodes[index]
    inputs = tensor_nodes(node)
    sub = graph.get_submodule(node.target) if node.op == "call_module" else None
    local = [i for i in inputs if i is nodes[0] or i in nodes[1:index]]
    tensors = [i for i in inputs if isinstance(ref.get(i), torch.Tensor)]
    return rule_for(node, sub, ref, local, tensors, 2)


@pytest.mark.parametrize(
    "layer, expected",
    [
        (nn.Conv1d(4, 3, 5, padding=2, dilation=3, stride=2), {"k": 5, "s": 2, "d": 3, "p": 2, "fill": 0.0}),
        (nn.Conv1d(4, 3, 4, padding="same"), {"k": 4, "s": 1, "d": 1, "p": 1, "fill": 0.0}),  # 1 left, 2 right
        (nn.Conv1d(4, 3, 3, padding="valid"), {"k": 3, "s": 1, "d": 1, "p": 0, "fill": 0.0}),
        (nn.MaxPool1d(3, stride=2, padding=1), {"k": 3, "s": 2, "d": 1, "p": 1, "fill": -math.inf}),
        (nn.AvgPool1d(4), {"k": 4, "s": 4, "d": 1, "p": 0, "fill": 0.0}),
    ],
)
def test_window_rules_read_the_kernel_geometry(layer, expected):
    rule = rule_of(nn.Sequential(layer))
    assert rule.kind == "window"
    assert {key: rule.extra[key] for key in expected} == expected
    # the rule's own call on an explicitly padded input is the layer (oracle: the layer itself)
    x = torch.randn(2, 4, 20)
    left = expected["p"]
    right = max(0, (layer(x).shape[-1] - 1) * expected["s"] + expected["d"] * (expected["k"] - 1) + 1 - 20 - left)
    padded = nn.functional.pad(x, (left, right), value=expected["fill"])
    torch.testing.assert_close(rule.extra["call"](padded), layer(x))


@pytest.mark.parametrize(
    "layer",
    [
        nn.Conv1d(4, 3, 3, padding=1, padding_mode="circular"),  # wraps around: not local
        nn.MaxPool1d(3, ceil_mode=True),
        nn.AvgPool1d(3, padding=1),  # count_include_pad edge values
        nn.Flatten(),
        nn.BatchNorm1d(4).train(),
        nn.Dropout(0.5).train(),
    ],
)
def test_operations_that_are_not_position_local(layer):
    assert rule_of(nn.Sequential(layer)) is None


def test_elementwise_crop_and_cat():
    class Ops(nn.Module):
        def forward(self, x):
            a = torch.relu(x)  # same
            b = a + x  # same (two local inputs)
            c = b[:, 1:3, 4:15]  # crop: channels 1:3, positions shift by 4
            d = torch.cat([b, x], dim=1)  # channel cat: same
            e = b.sum(2)  # a reduction over positions: not local
            return c, d, e

    graph, ref, nodes = traced(Ops())
    names = {str(node): node for node in nodes}
    local = [nodes[0]]
    kinds = {}
    for name in ("relu", "add", "getitem", "cat", "sum_1"):
        node = names[name]
        inputs = tensor_nodes(node)
        tensors = [i for i in inputs if isinstance(ref.get(i), torch.Tensor)]
        rule = rule_for(node, None, ref, [i for i in inputs if i in local], tensors, 2)
        kinds[name] = None if rule is None else rule.kind
        if rule is not None:
            local.append(node)
    assert kinds == {"relu": "same", "add": "same", "getitem": "crop", "cat": "same", "sum_1": None}
    crop = rule_for(names["getitem"], None, ref, [names["add"]], [names["add"]], 2)
    assert crop.extra["a"] == 4 and crop.extra["channels"] == slice(1, 3)


def test_in_place_operations_are_recognised():
    class InPlace(nn.Module):
        def __init__(self):
            super().__init__()
            self.act = nn.ReLU(inplace=True)

        def forward(self, x):
            return self.act(x).add_(1), nn.functional.relu(x, inplace=True), torch.relu(x)

    graph = fx.symbolic_trace(InPlace())
    flags = {
        str(n): is_inplace(n, graph.get_submodule(n.target) if n.op == "call_module" else None)
        for n in graph.graph.nodes
        if n.op in ("call_module", "call_method", "call_function")
    }
    assert flags["act"] and flags["add_"] and flags["relu"] and not flags["relu_1"]
