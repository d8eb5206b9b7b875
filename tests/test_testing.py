"""deepscope.testing: the awkward fixtures and the check that a function leaves a model untouched."""

from __future__ import annotations

import pytest
import torch

from deepscope.errors import InvalidParameterError
from deepscope.testing import FIXTURE_KINDS, check_model_untouched, make_fixture, model_fingerprint


@pytest.mark.parametrize("kind", FIXTURE_KINDS)
def test_fixtures_are_deterministic_and_awkward(kind):
    a, b = make_fixture(kind, seed=3), make_fixture(kind, seed=3)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
    assert a.model.training  # left in train mode on purpose
    parameters = list(a.model.parameters())
    assert not parameters[0].requires_grad and parameters[-1].grad is not None  # a frozen one, and grads
    assert any(module._forward_hooks for module in a.model.modules())
    assert int(a.targets.max()) < a.num_classes and (a.mask is None or a.mask.shape == a.inputs.shape)
    problem = a.problem()
    assert len(problem.tensors("train")[0]) + len(problem.tensors("test")[0]) == len(a.inputs)


def test_unknown_kind():
    with pytest.raises(InvalidParameterError, match="'kind' parameter of make_fixture"):
        make_fixture("transformer")


def _model():
    return make_fixture("mlp").model


def test_a_function_that_leaves_the_model_alone_passes_and_returns():
    model = _model()
    assert check_model_untouched(lambda: 42, model) == 42

    def reads(m):
        with torch.no_grad():
            return float(sum(p.sum() for p in m.parameters()))

    assert isinstance(check_model_untouched(reads, model, model), float)


@pytest.mark.parametrize(
    ("change", "what"),
    [
        (lambda m: m.eval(), "training changed"),
        (lambda m: torch.nn.init.zeros_(m[0].bias), "data changed"),
        (lambda m: m[0].bias.requires_grad_(False), "requires_grad changed"),
        (lambda m: m.register_forward_pre_hook(lambda *a: None), "hooks changed"),
        (lambda m: setattr(m[-1].weight, "grad", None), "grad"),
    ],
)
def test_every_kind_of_change_is_caught(change, what):
    model = _model()

    def mutate():
        with torch.no_grad():
            change(model)

    with pytest.raises(AssertionError, match=f"mutate changed the caller's model: .*{what}"):
        check_model_untouched(mutate, model)


def test_the_functions_own_error_is_reraised_after_the_check():
    def fails():
        raise ValueError("inner")

    with pytest.raises(ValueError, match="^inner$"):
        check_model_untouched(fails, _model())
    fingerprint = model_fingerprint(_model())
    assert set(fingerprint) >= {"data", "grads", "hooks", "training", "requires_grad"}
