"""The registry of public analyses, and the ``@analysis`` decorator that guards them.

Every public analysis is declared with :func:`analysis`. The decorator

* wraps the function so that it runs inside :func:`deepscope.guard.model_guard` on the model it
  receives (the first argument, an ``nn.Module``, or ``problem.model`` for a Problem), after
  refusing a model with NaN/Inf weights (``NonFiniteError`` naming the layer) when the analysis
  runs the model (``takes`` "problem" or "model_inputs"; a "model" analysis such as
  ``model_summary`` describes it instead), and passing a "model_inputs" analysis a copy of its
  inputs, so a model that works in place never changes the caller's tensor;
* checks the options many analyses share — ``seed`` (an int >= 0), ``max_batch`` (an int >= 1),
  ``parameter_names`` (None or a list of str) and every flag (a parameter whose default is a
  bool must be given a bool) — in one place, with the standard message naming the analysis (a
  NaN seed was a raw ``manual_seed`` RuntimeError, ``progress="no"`` was taken as True);
* records it in :data:`ANALYSES`, which the conformance test
  (``tests/test_conformance.py``) iterates: each entry is called on a standard fixture from
  :mod:`deepscope.testing` whose model is in train mode, with hooks, grads and frozen
  parameters, and the test asserts the model comes back bit-identical.

``takes`` says what the first argument is, so the conformance test can build it:

* ``"problem"`` — a :class:`deepscope.Problem`;
* ``"model_inputs"`` — ``(model, inputs)``; ``"model"`` — just the model.

``fixture`` picks the standard fixture (see :func:`deepscope.testing.make_fixture`):
``"mlp"`` (tabular classifier), ``"relu_mlp"`` (piecewise-linear, 2-D input), ``"cnn"``
(images with a conv layer and BatchNorm), ``"sequence"`` (one-hot DNA, 1-D conv).
``example_kwargs`` are cheap options that make the call fast in the test.

Example:
    >>> @analysis(takes="model_inputs", family="example", register=False)
    ... def output_norm(model, inputs):
    ...     return float(model(inputs).norm())
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, KeysView, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from deepscope._finite import check_finite_model
from deepscope._validation import MAX_SEED, check_choice, check_seed
from deepscope.errors import UnsupportedModelError, invalid_parameter
from deepscope.guard import model_guard

__all__ = ["AnalysisSpec", "ANALYSES", "ANALYSIS_PACKAGES", "analysis", "find_model", "load_all_analyses"]

F = TypeVar("F", bound=Callable[..., Any])


@dataclasses.dataclass(frozen=True)
class AnalysisSpec:
    """One registered public analysis."""

    name: str
    function: Callable[..., Any]
    takes: str
    family: str
    fixture: str
    example_kwargs: Mapping[str, Any]
    guard_mode: str


ANALYSES: dict[str, AnalysisSpec] = {}

_TAKES = ("problem", "model_inputs", "model")
_FIXTURES = ("mlp", "relu_mlp", "cnn", "sequence")


def find_model(first_argument: Any) -> nn.Module | None:
    """The model an analysis works on: the argument itself, or its ``.model`` (a Problem)."""
    if isinstance(first_argument, nn.Module):
        return first_argument
    model = getattr(first_argument, "model", None)
    return model if isinstance(model, nn.Module) else None


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


# option -> (what it must be, test)
_SHARED_OPTIONS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "seed": ("an int >= 0", lambda v: _is_int(v) and 0 <= v <= MAX_SEED),
    "max_batch": ("an int >= 1", lambda v: _is_int(v) and v >= 1),
    "parameter_names": (
        "None or a list of parameter names (str)",
        lambda v: (
            v is None
            or (isinstance(v, (Sequence, AbstractSet, KeysView)) and not isinstance(v, (str, bytes)))
            and all(isinstance(name, str) for name in v)
        ),
    ),
}


def _check_shared_options(signature: inspect.Signature, names: list[str], owner: str, args: Any, kwargs: Any) -> None:
    """Raise InvalidParameterError for a shared option given a bad value.

    The options of :data:`_SHARED_OPTIONS`, and every flag (a parameter whose default is True or
    False), which must be a bool: ``absolute="no"`` was silently taken as True.
    """
    try:
        given = signature.bind_partial(*args, **kwargs).arguments
    except TypeError:
        return  # a wrong call: the function itself raises Python's usual TypeError
    for option in names:
        if option not in given:
            continue
        if option in _SHARED_OPTIONS:
            expected, valid = _SHARED_OPTIONS[option]
        else:
            expected, valid = "a bool", lambda v: isinstance(v, (bool, np.bool_))
        if option == "seed":
            check_seed(given[option], owner)  # its own message for a seed beyond torch's range
        elif not valid(given[option]):
            raise invalid_parameter(option, owner, expected, given[option])


def analysis(
    name: str | None = None,
    *,
    takes: str,
    family: str,
    fixture: str = "mlp",
    example_kwargs: Mapping[str, Any] | None = None,
    guard_mode: str = "eval",
    register: bool = True,
) -> Callable[[F], F]:
    """Declare a public analysis: guard it and (by default) add it to :data:`ANALYSES`.

    Args:
        name: registry name (defaults to the function's name).
        takes: "problem", "model_inputs" or "model" — what the first argument is.
        family: "foundation", "attribution", "generalization", "curvature", "dynamics" or
            "expressivity".
        fixture: which standard fixture the conformance test uses.
        example_kwargs: cheap keyword arguments for the conformance test.
        guard_mode: the model_guard mode ("eval" by default; "train" for analyses that must
            see train-mode behaviour and handle it themselves).
        register: False for helpers and doctests that should not join the registry.
    """
    check_choice(takes, "takes", "analysis", _TAKES)
    check_choice(fixture, "fixture", "analysis", _FIXTURES)

    def decorate(function: F) -> F:
        spec_name = name or function.__name__
        signature = inspect.signature(function)
        flags = [name for name, parameter in signature.parameters.items() if isinstance(parameter.default, bool)]
        shared = [option for option in _SHARED_OPTIONS if option in signature.parameters] + flags

        @functools.wraps(function)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            if not args:
                raise invalid_parameter(
                    "model" if takes != "problem" else "problem", spec_name, "given as the first argument", None
                )
            model = find_model(args[0])
            if takes == "problem" and isinstance(args[0], nn.Module):  # a bare model where a Problem is needed
                model = None
            if model is None:
                expected = "a deepscope.Problem" if takes == "problem" else "a torch.nn.Module"
                raise invalid_parameter("problem" if takes == "problem" else "model", spec_name, expected, args[0])
            if shared:
                _check_shared_options(signature, shared, spec_name, args, kwargs)
            if takes != "model":  # analyses that run the model would return NaN: refuse, naming the layer
                check_finite_model(model, spec_name)
            if takes == "model_inputs":  # a model that works in place must never change the caller's inputs
                args, kwargs = _copy_inputs(args, kwargs)
            with model_guard(model, mode=guard_mode):
                try:
                    return function(*args, **kwargs)
                except RuntimeError as error:
                    if isinstance(model, torch.jit.ScriptModule) and "Jitted modules" in str(error):
                        raise _scripted_refusal(spec_name) from error
                    raise

        guarded.__deepscope_analysis__ = spec_name  # type: ignore[attr-defined]
        if register:
            ANALYSES[spec_name] = AnalysisSpec(
                name=spec_name,
                function=guarded,
                takes=takes,
                family=family,
                fixture=fixture,
                example_kwargs=dict(example_kwargs or {}),
                guard_mode=guard_mode,
            )
        return guarded  # type: ignore[return-value]

    return decorate


def _scripted_refusal(spec_name: str) -> UnsupportedModelError:
    """The one-line refusal for analyses that call a TorchScript module with substituted parameters."""
    return UnsupportedModelError(
        f"{spec_name} runs the model with substituted parameters (torch.func.functional_call), which "
        "TorchScript modules do not support; save the model as a torch.export program (.pt2) or as "
        "safetensors weights with its architecture to run it."
    )


def _copy_inputs(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The call's ``inputs`` (second positional argument or keyword) replaced by a detached copy."""
    if len(args) > 1 and isinstance(args[1], torch.Tensor):
        return (args[0], args[1].detach().clone(), *args[2:]), kwargs
    if isinstance(kwargs.get("inputs"), torch.Tensor):
        return args, {**kwargs, "inputs": kwargs["inputs"].detach().clone()}
    return args, kwargs


#: The packages that declare analyses (``@analysis`` lives nowhere else; a test checks it).
ANALYSIS_PACKAGES = ("attribution", "generalization", "curvature", "dynamics", "expressivity", "models")


def load_all_analyses() -> dict[str, AnalysisSpec]:
    """Import every module of :data:`ANALYSIS_PACKAGES` so that all ``@analysis`` declarations are
    registered (their report sections are left out: report code is not needed to run an analysis)."""
    import importlib
    import pkgutil

    for family in ANALYSIS_PACKAGES:
        package = importlib.import_module(f"deepscope.{family}")
        for info in pkgutil.walk_packages(package.__path__, prefix=f"deepscope.{family}."):
            if not info.name.endswith("report_section"):
                importlib.import_module(info.name)
    return ANALYSES
