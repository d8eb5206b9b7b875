"""Models that return a tuple or a dict: every registered analysis either works through ``output_fn``
or refuses with a DeepscopeError whose message is accurate (issue 13, item 15).

* An analysis that takes ``output_fn`` must work when it picks the class scores, and without it
  must raise a DeepscopeError that tells the user to pass ``output_fn``.
* An analysis that does not take ``output_fn`` must either work (it never reads the output) or
  raise a DeepscopeError that does not suggest an argument it lacks: it says the model must return
  one tensor, and that this analysis takes no ``output_fn`` (wrap the model instead).

A raw AttributeError, KeyError or TypeError from inside an analysis fails this test.
"""

import inspect

import pytest
import torch
from torch import nn

from deepscope.errors import DeepscopeError
from deepscope.problem import Problem
from deepscope.registry import load_all_analyses
from deepscope.testing import make_fixture

ANALYSES = load_all_analyses()
PICK = {"tuple": lambda out: out[0], "dict": lambda out: out["logits"]}


class SeveralOutputs(nn.Module):
    """The fixture's Sequential, returning ``(logits, features)`` or ``{"logits": ..., "features": ...}``.

    Its layers keep their names ("0", "1", ...), so options naming layers still apply.
    """

    def __init__(self, inner: nn.Sequential, kind: str):
        super().__init__()
        for name, layer in inner.named_children():
            self.add_module(name, layer)
        self.kind = kind

    def forward(self, x):
        for layer in self.children():
            x = layer(x)
        features = torch.relu(x)  # a second output the analyses must not mistake for the scores
        return (x, features) if self.kind == "tuple" else {"logits": x, "features": features}


def _call(spec, model, fixture, **options):
    kwargs = {**dict(spec.example_kwargs), **options}
    if spec.takes == "problem":
        half = len(fixture.inputs) // 2
        problem = Problem(
            model,
            (fixture.inputs[:half], fixture.targets[:half]),
            (fixture.inputs[half:], fixture.targets[half:]),
            batch_size=16,
        )
        return spec.function(problem, **kwargs)
    if spec.takes == "model_inputs":
        return spec.function(model, fixture.inputs[:8], **kwargs)
    return spec.function(model, **kwargs)


def _takes_output_fn(spec) -> bool:
    """``output_fn`` is a parameter, or passes through ``**options`` to the methods (check_axioms)."""
    parameters = inspect.signature(spec.function).parameters
    return "output_fn" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())


@pytest.mark.parametrize("kind", ["tuple", "dict"])
@pytest.mark.parametrize("name", sorted(ANALYSES))
def test_several_outputs_work_through_output_fn_or_are_refused_accurately(name, kind):
    spec = ANALYSES[name]
    fixture = make_fixture(spec.fixture)
    model = SeveralOutputs(fixture.model, kind)
    if _takes_output_fn(spec):
        result = _call(spec, model, fixture, output_fn=PICK[kind])
        assert result is not None
        with pytest.raises(DeepscopeError, match="output_fn"):
            _call(spec, model, fixture)
        return
    try:
        result = _call(spec, model, fixture)
    except DeepscopeError as error:
        message = str(error)
        # accurate: it names the problem (one tensor expected) and suggests no argument the
        # analysis lacks ("pass output_fn" only together with "takes no output_fn"); an analysis
        # of a Problem may point to Problem's own output_fn, which every Problem takes
        assert "tensor" in message, message
        to_problem = spec.takes == "problem" and "Problem(..., output_fn=" in message
        assert "output_fn" not in message or "no output_fn" in message or to_problem, message
    else:
        assert result is not None


def _numbers(name, result):
    """The numbers an analysis computes, for comparing two runs."""
    pick = {
        "ntk": lambda r: r.kernel,
        "ntk_dynamics": lambda r: torch.tensor(r.actual_loss + r.kernel_drift),
        "lipschitz": lambda r: torch.tensor([r.upper, r.upper_product, r.lower, r.lower_at_data]),
        "layer_health": lambda r: torch.as_tensor(r.jacobian_singular_values),
        "trajectory_length": lambda r: torch.tensor([row["length"] for row in r.layers]),
        "lrp": lambda r: r.values,
    }
    return pick[name](result)


@pytest.mark.parametrize("kind", ["tuple", "dict"])
@pytest.mark.parametrize("name", ["ntk", "ntk_dynamics", "lipschitz", "layer_health", "trajectory_length", "lrp"])
def test_output_fn_gives_the_result_of_the_plain_model(name, kind):
    """The analyses that gained output_fn compute exactly what they compute on the bare scores."""
    spec = ANALYSES[name]
    fixture = make_fixture(spec.fixture)
    plain = _call(spec, fixture.model, fixture)
    picked = _call(spec, SeveralOutputs(fixture.model, kind), fixture, output_fn=PICK[kind])
    # the same layers on the same inputs in the same order: equal up to float32 rounding
    expected, got = _numbers(name, plain), _numbers(name, picked)
    if name == "trajectory_length":  # the wrapper has one more activation stage (its relu features)
        expected, got = expected[[0, -1]], got[[0, -1]]
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)


def test_an_output_fn_that_computes_instead_of_picking_is_refused_by_graph_analyses():
    fixture = make_fixture("cnn")
    model = SeveralOutputs(fixture.model, "tuple")
    from deepscope.expressivity import lipschitz

    with pytest.raises(DeepscopeError, match="output_fn must pick one of the tensors"):
        lipschitz(model, fixture.inputs[:4], output_fn=lambda out: out[0] * 2, search_steps=0)
    with pytest.raises(DeepscopeError, match="output_fn returned a NoneType"):
        ANALYSES["ntk"].function(model, fixture.inputs[:4], output_fn=lambda out: None)
