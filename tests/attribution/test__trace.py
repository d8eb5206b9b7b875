"""Tracing model(x, *args) with the optional arguments left out at their defaults."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deepscope.attribution._trace import trace_model
from deepscope.errors import UnsupportedModelError


class _Optional(nn.Module):
    """``forward(x, extra=None, **kwargs)``: symbolic_trace makes ``extra`` a proxy and traces its branch."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 2)

    def forward(self, x, extra=None, **kwargs):
        if extra is None:
            return self.linear(x)
        return self.linear(x) + extra.sum(1, keepdim=True)


def test_optional_arguments_take_their_defaults_and_given_ones_are_placeholders():
    model = _Optional()
    x, extra = torch.randn(4, 3), torch.randn(4, 5)
    # the failure this module exists for: the optional branch is traced, extra becomes an input
    assert "extra" in {node.name for node in torch.fx.symbolic_trace(model).graph.nodes}
    plain = trace_model(model, owner="test")
    assert [node.name for node in plain.graph.nodes if node.op == "placeholder"] == ["x"]
    torch.testing.assert_close(plain(x), model(x))
    with_extra = trace_model(model, n_args=1, owner="test")
    assert [node.name for node in with_extra.graph.nodes if node.op == "placeholder"] == ["x", "arg0"]
    torch.testing.assert_close(with_extra(x, extra), model(x, extra))
    assert dict(model.named_parameters()).keys() == {"linear.weight", "linear.bias"}  # the model is only held


def test_leaf_types_are_kept_as_one_call_and_failures_are_named():
    class Scaling(nn.Module):
        def forward(self, h):
            return h * torch.softmax(h, -1)

    model = nn.Sequential(nn.Linear(3, 4), Scaling())
    targets = {str(node.target) for node in trace_model(model, owner="test", leaf_types=(Scaling,)).graph.nodes}
    assert "1" in targets and "<built-in function mul>" not in targets

    class Branchy(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x

    with pytest.raises(UnsupportedModelError, match=r"^lrp needs a model torch.fx can trace .*model\(x\) failed"):
        trace_model(Branchy(), owner="lrp")
