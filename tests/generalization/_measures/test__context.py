"""Oracle: the measure context's training subset, forward-pass count, margins and accuracy by hand.

The model is a ``Linear`` layer with hand-set weights, so every output, margin and prediction is
known exactly; outputs are float32 products of small integers and halves (exact in binary), so the
comparisons use ``atol=1e-6`` only to allow for the float32 → float64 cast of the margins.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deepscope import Problem
from deepscope.errors import UnsupportedModelError
from deepscope.generalization._measures._context import build_context


def _model() -> nn.Linear:
    model = nn.Linear(2, 3)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]))
        model.bias.copy_(torch.tensor([0.0, 0.5, 0.0]))
    return model


X = torch.tensor([[2.0, 0.0], [0.0, 2.0], [-1.0, -1.0], [1.0, 1.0], [0.0, 0.0]])
Y = torch.tensor([0, 1, 2, 0, 1])
# outputs by hand: [2, .5, -2], [0, 2.5, -2], [-1, -.5, 2], [1, 1.5, -2], [0, .5, 0]
MARGINS = [1.5, 2.5, 2.5, -0.5, 0.5]


def test_the_subset_is_the_first_max_samples_examples_and_m_counts_the_whole_train_set():
    x, y = torch.arange(60.0).reshape(30, 2), torch.arange(30) % 3
    ctx = build_context(Problem(_model(), (x, y)), max_samples=10, seed=4)
    assert torch.equal(ctx.x, x[:10]) and torch.equal(ctx.y, y[:10])
    assert ctx.y.dtype == torch.long and ctx.m == 30 and ctx.seed == 4
    assert ctx.depth == 1 and ctx.num_params == 2 * 3 + 3
    assert ctx.forward_passes == 0  # building the context runs no counted forward pass


def test_clean_outputs_are_computed_once_and_every_other_pass_is_counted_per_example():
    ctx = build_context(Problem(_model(), (X, Y)), max_samples=None, seed=0)
    with torch.no_grad():
        expected = _model()(X)
    assert torch.allclose(ctx.outputs(), expected, atol=0)
    assert ctx.forward_passes == 5
    ctx.outputs(), ctx.margins(), ctx.margin(), ctx.accuracy()  # all reuse the cached clean outputs
    assert ctx.forward_passes == 5
    negated = {name: -value for name, value in ctx.params.items()}
    chunked = ctx.outputs(negated, chunk=2)  # chunks of 2, 2, 1: counted as 5 examples, not 3 calls
    assert ctx.forward_passes == 10
    with torch.no_grad():
        assert torch.equal(chunked, -expected)  # sign flips are exact
    assert ctx.accuracy(negated) == 0.0  # each prediction is a clean argmin: 2, 2, 0, 2, 0 or 2; never the label
    assert ctx.forward_passes == 15


def test_margins_margin_and_accuracy_by_hand():
    ctx = build_context(Problem(_model(), (X, Y)), max_samples=None, seed=0)
    assert ctx.margins().dtype == torch.float64
    assert ctx.margins().tolist() == pytest.approx(MARGINS, abs=1e-6)
    # 10th percentile, linear interpolation: sorted [-0.5, 0.5, 1.5, 2.5, 2.5], position 0.4 → -0.5 + 0.4·1
    assert ctx.margin() == pytest.approx(-0.1, abs=1e-6)
    assert ctx.accuracy() == pytest.approx(4 / 5)  # only example 3 (margin -0.5) is misclassified


def test_initial_weights_are_taken_from_the_init_state_and_left_out_without_one():
    model = _model()
    init = {name: torch.zeros_like(value) for name, value in model.state_dict().items()}
    ctx = build_context(Problem(model, (X, Y), init_state=init), max_samples=None, seed=0)
    assert all(torch.equal(ctx.init_params[name], torch.zeros_like(ctx.params[name])) for name in ctx.params)
    assert ctx.folded_init is not None and len(ctx.folded_init) == len(ctx.folded) == 1
    bare = build_context(Problem(model, (X, Y)), max_samples=None, seed=0)
    assert bare.init_params is None and bare.init_buffers is None and bare.folded_init is None


def test_the_params_are_detached_so_the_caller_model_is_untouched():
    model = _model()
    before = {name: value.clone() for name, value in model.state_dict().items()}
    ctx = build_context(Problem(model, (X, Y)), max_samples=None, seed=0)
    ctx.outputs({name: value * 3 for name, value in ctx.params.items()})
    assert all(not value.requires_grad for value in ctx.params.values())
    assert all(torch.equal(model.state_dict()[name], value) for name, value in before.items())


def test_a_regression_loss_is_refused():
    with pytest.raises(UnsupportedModelError, match="classification loss.*'mse'"):
        build_context(Problem(_model(), (X, torch.randn(5, 3)), loss="mse"), max_samples=None, seed=0)


class _Scale(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(2))

    def forward(self, x):
        return x * self.scale


def test_a_model_without_linear_or_conv_layers_is_refused():
    with pytest.raises(UnsupportedModelError, match="no Linear or Conv layer"):
        build_context(Problem(_Scale(), (X, torch.tensor([0, 1, 0, 1, 0]))), max_samples=None, seed=0)


def test_margin_order_correct_and_search_bounds_by_hand():
    ctx = build_context(Problem(_model(), (X, Y)), max_samples=None, seed=0)
    # margins [1.5, 2.5, 2.5, -0.5, 0.5]: increasing, ties in index order (stable sort)
    assert ctx.margin_order().tolist() == [3, 4, 0, 1, 2]
    passes = ctx.forward_passes
    hits = ctx.correct(ctx.params, torch.tensor([3, 0, 4]))
    assert hits.tolist() == [False, True, True] and ctx.forward_passes == passes + 3  # example 3 is the miss
    negated = {name: -value for name, value in ctx.params.items()}
    assert not ctx.correct(negated, torch.arange(5)).any()  # as in the accuracy test: never the label
    assert ctx.search_bounds(size=2) == [(0, 1), (1, 3), (3, 5)]  # 3 equal chunks, not 2 + 2 + 1
    assert ctx.search_bounds() == [(0, 5)]  # a few bytes of activations per example: one chunk
