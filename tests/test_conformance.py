"""Conformance: every registered public analysis runs on its own fixture and leaves the model bit-identical.

In the spirit of scikit-learn's estimator checks: the registry (deepscope.registry.ANALYSES)
is filled by the ``@analysis`` decorator, so this test grows with the package. Each analysis
is called on a deliberately awkward fixture (train mode, BatchNorm stats, Dropout, a forward
hook, a frozen parameter, existing .grad tensors) and must SUCCEED there (an analysis that
cannot run on the standard fixture declares one that works, or example_kwargs, in its
registration); the model's fingerprint is compared bit for bit before and after. Refusals are
tested separately: an analysis interrupted by a failing forward pass, or refused by a
DeepscopeError raised inside the model, also leaves the model intact.
"""

import pytest
import torch

from deepscope.errors import DataError, DeepscopeError
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
def test_analysis_succeeds_on_its_fixture_and_leaves_model_untouched(name):
    spec = ANALYSES[name]
    fixture = make_fixture(spec.fixture)
    args = _arguments(spec, fixture)
    # no except clause: a refusal (DeepscopeError) on the analysis's own fixture is a failure
    result = check_model_untouched(spec.function, fixture.model, *args, **dict(spec.example_kwargs))
    assert result is not None, f"{name} returned None on its fixture"


class Tripwire(RuntimeError):
    pass


def _caused_by(error, kind):
    """True if ``error`` is ``kind`` or was raised from/while handling one (explicit or implicit chain)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, kind):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def _run_with_failing_forward(spec, fixture, failure, at_call):
    """Run the analysis with the model's ``at_call``-th forward pass raising ``failure``; return what was raised."""
    args = _arguments(spec, fixture)
    calls = {"n": 0}

    def tripwire(module, inputs):
        calls["n"] += 1
        if calls["n"] == at_call:
            raise failure

    handle = fixture.model.register_forward_pre_hook(tripwire)
    try:
        check_model_untouched(spec.function, fixture.model, *args, **dict(spec.example_kwargs))
    except Exception as error:  # noqa: BLE001 - inspected by the caller
        return error, calls["n"]
    finally:
        handle.remove()
    return None, calls["n"]


@pytest.mark.parametrize("name", sorted(ANALYSES))
def test_analysis_leaves_model_untouched_on_error(name):
    """An analysis interrupted half-way (the model's 3rd forward pass raises) still restores it.

    The failure must surface: as itself, or as a DeepscopeError raised from it (an analysis may
    translate a failing forward pass into a clear error, but must not swallow it).
    """
    spec = ANALYSES[name]
    error, calls = _run_with_failing_forward(spec, make_fixture(spec.fixture), Tripwire("injected failure"), 3)
    if calls < 3:
        assert error is None, f"{name} raised {error!r} without reaching the failing pass"
        return
    assert error is not None, f"{name} swallowed a failing forward pass"
    assert isinstance(error, (Tripwire, DeepscopeError)) and _caused_by(error, Tripwire), repr(error)


@pytest.mark.parametrize("name", sorted(ANALYSES))
def test_refusal_leaves_model_untouched(name):
    """A refusal (a DeepscopeError raised from inside the first forward pass) propagates and the model is intact."""
    spec = ANALYSES[name]
    error, calls = _run_with_failing_forward(spec, make_fixture(spec.fixture), DataError("refused on purpose"), 1)
    if calls == 0:  # an analysis that never runs the model (parameter statistics only)
        assert error is None, repr(error)
        return
    assert isinstance(error, DeepscopeError) and _caused_by(error, DataError), repr(error)


MODEL_INPUTS = sorted(name for name, spec in ANALYSES.items() if spec.takes == "model_inputs")


@pytest.mark.parametrize("name", MODEL_INPUTS)
def test_analysis_never_modifies_the_callers_inputs(name):
    """Even when the model overwrites its input in place (as ReLU(inplace=True) first layers do)."""
    spec = ANALYSES[name]
    fixture = make_fixture(spec.fixture)
    inputs = fixture.inputs[:8].clone()
    before = inputs.clone()

    def overwrite(module, args):
        with torch.no_grad():
            args[0].add_(0.5)

    handle = fixture.model.register_forward_pre_hook(overwrite)
    try:
        spec.function(fixture.model, inputs, **dict(spec.example_kwargs))
    finally:
        handle.remove()
    assert torch.equal(inputs, before), f"{name} let the model change the caller's inputs"
