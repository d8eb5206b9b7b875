"""Conformance: every registered public analysis leaves the caller's model bit-identical.

In the spirit of scikit-learn's estimator checks: the registry (deepscope.registry.ANALYSES)
is filled by the ``@analysis`` decorator, so this test grows with the package. Each analysis
is called on a deliberately awkward fixture (train mode, BatchNorm stats, Dropout, a forward
hook, a frozen parameter, existing .grad tensors) and the model's fingerprint is compared
bit for bit before and after — also when the analysis raises a DeepscopeError.
"""

import pytest

from deepscope.errors import DeepscopeError
from deepscope.registry import load_all_analyses
from deepscope.testing import check_model_untouched, make_fixture

ANALYSES = load_all_analyses()


def test_registry_is_not_empty():
    assert ANALYSES, "no public analysis registered"


def _arguments(spec, fixture):
    if spec.takes == "problem":
        return (fixture.problem(),)
    if spec.takes == "model_inputs":
        return (fixture.model, fixture.inputs[:8])
    return (fixture.model,)


@pytest.mark.parametrize("name", sorted(ANALYSES))
def test_analysis_leaves_model_untouched(name):
    spec = ANALYSES[name]
    fixture = make_fixture(spec.fixture)
    args = _arguments(spec, fixture)
    kwargs = dict(spec.example_kwargs)
    try:
        check_model_untouched(spec.function, fixture.model, *args, **kwargs)
    except DeepscopeError:
        # refusing an input is allowed (e.g. a smooth-activation model for exact regions);
        # check_model_untouched has already verified the model was left intact.
        pass


class Tripwire(RuntimeError):
    pass


@pytest.mark.parametrize("name", sorted(ANALYSES))
def test_analysis_leaves_model_untouched_on_error(name):
    """An analysis interrupted half-way (the model's 3rd forward pass raises) still restores it."""
    spec = ANALYSES[name]
    fixture = make_fixture(spec.fixture)
    args = _arguments(spec, fixture)
    calls = {"n": 0}

    def tripwire(module, inputs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise Tripwire("injected failure")

    handle = fixture.model.register_forward_pre_hook(tripwire)
    try:
        try:
            check_model_untouched(spec.function, fixture.model, *args, **dict(spec.example_kwargs))
        except (Tripwire, DeepscopeError):
            pass
    finally:
        handle.remove()
