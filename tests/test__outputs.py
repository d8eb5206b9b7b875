"""One way to pick the analysed output of a model that returns a tuple, a dict or a dataclass."""

from __future__ import annotations

import pytest
import torch
import torch.fx as fx

from deepscope._outputs import ancestors, check_output_fn, picked_node, select_output
from deepscope.errors import InvalidParameterError, UnsupportedModelError


class TwoHeads(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Linear(3, 4)

    def forward(self, x):
        hidden = self.body(x)
        return {"logits": hidden.relu(), "aux": hidden.sum(1)}


def test_check_output_fn():
    check_output_fn(None, "ntk")
    check_output_fn(lambda out: out, "ntk")
    with pytest.raises(InvalidParameterError, match="'output_fn' parameter of ntk must be a callable"):
        check_output_fn("logits", "ntk")


def test_select_output():
    logits = torch.ones(2, 3)
    assert select_output(logits, None, "f") is logits
    assert select_output({"logits": logits}, lambda out: out["logits"], "f") is logits
    with pytest.raises(UnsupportedModelError, match=r"^f: the model returned a dict, not a tensor; pass output_fn"):
        select_output({"logits": logits}, None, "f")
    with pytest.raises(UnsupportedModelError, match="output_fn returned a list, not a tensor"):
        select_output(logits, lambda out: [out], "f")


def test_picked_node_follows_the_graph_to_the_chosen_tensor():
    graph = fx.symbolic_trace(TwoHeads())
    node = picked_node(graph, lambda out: out["logits"], "lrp", "to explain")
    assert node.op == "call_method" and node.target == "relu"
    assert {n.name for n in ancestors(node)} == {"x", "body", "relu"}
    with pytest.raises(UnsupportedModelError, match="returns a dict, not one tensor.*the output to explain"):
        picked_node(graph, None, "lrp", "to explain")
    with pytest.raises(UnsupportedModelError, match="cannot follow what output_fn computes"):
        picked_node(graph, lambda out: out["logits"] * 2, "lrp", "to explain")
    single = fx.symbolic_trace(torch.nn.Sequential(torch.nn.Linear(3, 2)))
    assert picked_node(single, None, "lrp", "to explain").op == "call_module"


def test_an_output_fn_that_fails_is_reported_with_the_output_kind():
    with pytest.raises(
        UnsupportedModelError, match="ntk: output_fn failed on the model's output \\(a tuple\\): AttributeError"
    ):
        select_output((torch.ones(2, 3),), lambda out: out.logits, "ntk")
    with pytest.raises(UnsupportedModelError, match="IndexError"):
        select_output((torch.ones(2, 3),), lambda out: out[3], "ntk")


def test_a_deepscope_error_from_output_fn_passes_unchanged():
    def refuse(out):
        raise InvalidParameterError("mine")

    with pytest.raises(InvalidParameterError, match="^mine$"):
        select_output(torch.ones(2), refuse, "ntk")
