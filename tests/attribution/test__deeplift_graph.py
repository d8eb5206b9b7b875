"""Which steps DeepLIFT's multipliers are exact for: affine and element-wise steps pass, the rest is named."""

from __future__ import annotations

import pytest
import torch
import torch.fx as fx
from torch import nn

from deepscope.attribution._deeplift_graph import RefuseStep, dependent_nodes, refusal, unsupported_steps
from deepscope.errors import UnsupportedModelError


def _problems(model: nn.Module) -> dict[str, str]:
    return {node.name: why for node, why in unsupported_steps(fx.symbolic_trace(model)).items()}


class _Fn(nn.Module):
    def __init__(self, function):
        super().__init__()
        self.function = function
        self.linear = nn.Linear(4, 4)

    def forward(self, x):
        return self.function(self.linear(x), x)


def test_affine_and_elementwise_chains_pass():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2, 3), nn.Tanh())
    assert _problems(model) == {}
    assert _problems(_Fn(lambda h, x: h + 2 * x - h.mean(1, keepdim=True))) == {}  # sums and means are affine
    assert _problems(_Fn(lambda h, x: h / 3.0)) == {}  # a division by a constant is affine


@pytest.mark.parametrize(
    ("function", "reason"),
    [
        (lambda h, x: torch.maximum(h, x), "maximum"),
        (lambda h, x: torch.softmax(h, 0), "softmax over the batch axis or without a dim"),
        (lambda h, x: h.amax(), ".amax() over the batch axis or over all axes (give a dim >= 1)"),
        (lambda h, x: torch.max(h, x), "max of two tensors (an element-wise maximum)"),
        (lambda h, x: 1.0 / (h + 2.0), "truediv: a division by an input-dependent tensor"),
        (lambda h, x: torch.sort(h, 1).values, "sort"),
    ],
)
def test_non_affine_steps_are_named(function, reason):
    assert reason in _problems(_Fn(function)).values()


def test_train_mode_batch_statistics_and_dropout_are_refused_but_eval_mode_passes():
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Dropout(0.5), nn.Linear(4, 2))
    problems = _problems(model)
    assert "BatchNorm1d using batch statistics (train mode or no running statistics)" in problems.values()
    assert "Dropout in train mode" in problems.values()
    assert _problems(model.eval()) == {}


def test_a_dead_branch_is_never_refused():
    class DeadBranch(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(4, 2)

        def forward(self, x):
            _unused = torch.sort(x, 1).values * x
            return self.linear(x)

    assert _problems(DeadBranch()) == {}


def test_refuse_step_raises_only_when_differentiated_through():
    x = torch.ones(3, requires_grad=True)
    refused = RefuseStep.apply(x, refusal("mul", "a product"))
    assert torch.equal(refused, x)
    (x * 2).sum().backward()  # an unrelated backward is fine
    with pytest.raises(UnsupportedModelError, match=r"^deeplift: step 'mul' \(a product\) is not affine"):
        refused.sum().backward()


def test_products_normalisers_and_global_max_have_rules():
    assert _problems(_Fn(lambda h, x: h * x)) == {}  # the midpoint product rule
    assert _problems(_Fn(lambda h, x: torch.softmax(h, dim=1) + torch.logsumexp(h, 1, keepdim=True))) == {}
    assert _problems(_Fn(lambda h, x: torch.amax(h, dim=1) + h.max(dim=-1).values + torch.exp(h).log().sum(1))) == {}


def test_extra_placeholders_are_held_fixed():
    class WithControl(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(4, 4)

        def forward(self, x, control):
            return self.linear(x) + torch.log(control + 1) * torch.sort(control, 1).values

    graph = fx.symbolic_trace(WithControl())
    assert unsupported_steps(graph, n_inputs=1) == {}  # log and sort of the fixed argument are constants
    assert {node.name for node in dependent_nodes(graph, 1)} == {"x", "linear", "add_1"}
    assert {node.name for node in unsupported_steps(graph, n_inputs=2)} == {
        "sort"
    }  # log is element-wise: it has a rule
