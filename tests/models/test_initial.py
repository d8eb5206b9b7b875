"""initial_copy: the one fresh copy at the initial weights (used by every retraining)."""

import pytest
import torch

from deepscope.errors import InvalidParameterError
from deepscope.guard import bitwise_equal
from deepscope.models.initial import initial_copy
from deepscope.testing import make_fixture


def test_the_copy_holds_init_state_and_the_model_is_untouched():
    fixture = make_fixture("cnn")
    before = {k: v.clone() for k, v in fixture.model.state_dict().items()}
    start = {k: v * 0.5 if v.is_floating_point() else v for k, v in before.items()}
    copy = initial_copy(fixture.model, start)
    assert copy is not fixture.model
    assert all(bitwise_equal(copy.state_dict()[k], start[k]) for k in start)
    assert all(bitwise_equal(fixture.model.state_dict()[k], before[k]) for k in before)


def test_without_init_state_the_copy_is_reinitialised_under_the_seed_and_the_global_stream_is_kept():
    fixture = make_fixture("mlp")
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first = initial_copy(fixture.model, seed=4)
    assert torch.equal(torch.rand(3), expected_next)  # the caller's global RNG stream is as it was
    second = initial_copy(fixture.model, seed=4)
    other = initial_copy(fixture.model, seed=5)
    # the reference: reset_parameters of every module of a deep copy, seeded
    import copy as copy_module

    reference = copy_module.deepcopy(fixture.model)
    torch.manual_seed(4)
    for module in reference.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    for name, value in reference.state_dict().items():
        assert bitwise_equal(first.state_dict()[name], value), name
        assert bitwise_equal(second.state_dict()[name], value), name
    assert not all(bitwise_equal(other.state_dict()[k], v) for k, v in reference.state_dict().items())


def test_the_callers_hooks_gradients_and_frozen_flags_stay_with_the_caller():
    fixture = make_fixture("mlp")
    model = fixture.model
    calls = []
    handle = model.register_forward_hook(lambda module, inputs, output: calls.append(1))
    first = next(model.parameters())
    first.requires_grad_(False)
    last = list(model.parameters())[-1]
    last.grad = torch.ones_like(last)
    try:
        copy = initial_copy(model, seed=0)
        copy(fixture.inputs)
        assert calls == []
        assert all(p.requires_grad and p.grad is None for p in copy.parameters())
        assert not first.requires_grad and last.grad is not None  # the caller's model keeps its state
    finally:
        handle.remove()
        first.requires_grad_(True)
        last.grad = None


@pytest.mark.parametrize(
    "args,kwargs,name",
    [
        (("not a model",), {}, "model"),
        ((torch.nn.Linear(2, 2), [1, 2]), {}, "init_state"),
        ((torch.nn.Linear(2, 2),), {"seed": -1}, "seed"),
    ],
)
def test_bad_input_names_the_parameter(args, kwargs, name):
    with pytest.raises(InvalidParameterError, match=f"'{name}' parameter of initial_copy"):
        initial_copy(*args, **kwargs)
