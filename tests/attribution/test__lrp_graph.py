"""The graph LRP walks back: steps by kind, BatchNorm folded, values out of place, relevance conserved."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deepscope.attribution._lrp_graph import LrpGraph, stabilise
from deepscope.errors import UnsupportedModelError


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.inner = nn.Linear(4, 4, bias=False)
        self.head = nn.Linear(4, 2, bias=False)

    def forward(self, x):
        out = torch.relu(self.inner(x))
        out += x  # in place: the graph must keep every earlier activation as it was
        return self.head(out)


def _epsilon_rule(step, a, relevance):
    """The ε-rule by autograd: R_a = a · ∂(z · s)/∂a with s = R / (z + ε sign z), s held fixed."""
    a = a.detach().requires_grad_(True)
    with torch.enable_grad():
        z = step.run(a)
        share = (relevance / stabilise(z, 1e-9)).detach()
        (gradient,) = torch.autograd.grad((z * share).sum(), a)
    return a.detach() * gradient


def test_steps_values_and_conservation_through_a_residual_sum():
    model, x = Residual(), torch.randn(3, 4, generator=torch.Generator().manual_seed(1))
    graph = LrpGraph(model)
    assert sorted({step.kind for step in graph.steps.values()}) == ["add", "input", "linear", "pass"]
    values = graph.forward(x)
    torch.testing.assert_close(values[graph.output], model(x))
    assert torch.equal(values[graph.input], x)
    output = values[graph.output]
    relevance = graph.relevance(values, output, _epsilon_rule, epsilon=1e-9)
    # bias-free layers and the ε-rule of the sum conserve relevance: Σ R(input) = Σ F(x) per example
    torch.testing.assert_close(relevance.sum(1), output.sum(1), rtol=1e-4, atol=1e-5)


def test_batchnorm_is_folded_into_its_layer():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 2))
    model(torch.randn(16, 3))  # move the running statistics away from their defaults
    model.eval()
    graph = LrpGraph(model)
    kinds = [step.kind for step in graph.steps.values()]
    assert kinds.count("linear") == 2 and kinds.count("pass") == 2  # the BatchNorm is a pass-through
    x = torch.randn(4, 3)
    torch.testing.assert_close(graph.forward(x)[graph.output], model(x))


def test_steps_without_a_rule_are_named_only_when_the_output_depends_on_them():
    class Softmaxed(nn.Module):
        def __init__(self, live):
            super().__init__()
            self.linear, self.live = nn.Linear(3, 2), live

        def forward(self, x):
            probabilities = torch.softmax(self.linear(x), 1)
            return probabilities if self.live else self.linear(x)

    with pytest.raises(UnsupportedModelError, match="softmax"):
        LrpGraph(Softmaxed(live=True))
    LrpGraph(Softmaxed(live=False))  # a dead branch is never refused
    with pytest.raises(UnsupportedModelError, match="step '_0' is a Bilinear"):
        LrpGraph(nn.Bilinear(2, 2, 1))

    class TwoInputs(nn.Module):
        def forward(self, a, b):
            return a + b

    with pytest.raises(UnsupportedModelError, match="one input; its forward takes 2"):
        LrpGraph(TwoInputs())


def test_stabilise_never_divides_by_zero():
    z = torch.tensor([0.0, -0.0, 2.0, -2.0])
    assert stabilise(z, 0.1).tolist() == pytest.approx([0.1, 0.1, 2.1, -2.1])
