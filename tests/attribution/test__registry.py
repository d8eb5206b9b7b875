"""The attribution registry: one declaration per method, every other view derived from it."""

from __future__ import annotations

import inspect

import pytest
import torch

import deepscope.attribution as attribution
from deepscope.attribution import _registry
from deepscope.attribution._registry import (
    AXIOMS,
    REGISTRY,
    ReportDefaults,
    attribution_method,
    method_aliases,
    method_named,
    report_axiom_methods,
    report_methods,
)
from deepscope.errors import InvalidParameterError
from deepscope.registry import ANALYSES, load_all_analyses


@pytest.fixture
def scratch_registry(monkeypatch):
    """A copy of the registry that a test may extend; the real one is restored afterwards."""
    monkeypatch.setattr(_registry, "REGISTRY", dict(REGISTRY))
    return _registry.REGISTRY


def _returns_attribution(function) -> bool:
    """``-> Attribution``, or ``-> Attribution | MultiInputAttribution`` (the methods that take a tuple of inputs)."""
    annotation = inspect.signature(function).return_annotation
    name = getattr(annotation, "__name__", annotation)
    return isinstance(name, str) and "Attribution" in name.split(" | ")


def test_every_attribution_analysis_is_registered_with_its_metadata():
    load_all_analyses()
    methods = [
        spec for spec in ANALYSES.values() if spec.family == "attribution" and _returns_attribution(spec.function)
    ]
    assert len(methods) >= 13
    missing = [spec.name for spec in methods if spec.name not in REGISTRY]
    assert missing == [], f"attribution methods without @attribution_method (name, aliases, claimed axioms): {missing}"
    for spec in methods:
        entry = REGISTRY[spec.name]
        assert entry.function is spec.function
        assert entry.claimed_axioms <= set(AXIOMS) and isinstance(entry.aliases, tuple)
        assert entry.report is None or isinstance(entry.report, ReportDefaults)


def test_a_registration_without_its_metadata_is_refused(scratch_registry):
    def method(model, inputs, target=None):
        return inputs

    with pytest.raises(TypeError, match="claimed_axioms"):
        attribution_method(aliases=(), report=None)(method)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="report"):
        attribution_method(aliases=(), claimed_axioms=())(method)  # type: ignore[call-arg]
    with pytest.raises(InvalidParameterError, match="'claimed_axioms' parameter of attribution_method.*'completeness'"):
        attribution_method(aliases=(), claimed_axioms={"fairness"}, report=None)
    with pytest.raises(InvalidParameterError, match="integrated_gradients has it"):
        attribution_method(aliases=("ig",), claimed_axioms=(), report=None)(method)
    with pytest.raises(InvalidParameterError, match="'report' parameter"):
        attribution_method(aliases=(), claimed_axioms=(), report={"order": 1})
    assert "method" not in scratch_registry


def test_the_public_views_follow_the_registry(scratch_registry):
    def novel(model, inputs, target=None):
        return inputs

    attribution_method(aliases=("nv",), claimed_axioms={"dummy"}, report=None)(novel)
    assert attribution.METHODS["novel"] is novel and list(attribution.METHODS)[-1] == "novel"
    assert attribution.CLAIMED_AXIOMS["novel"] == frozenset({"dummy"})
    assert method_aliases()["nv"] == "novel" and method_named("nv", "someone") == ("novel", novel)


def test_the_views_match_the_registration_order_and_claims():
    assert list(attribution.METHODS)[:3] == ["saliency", "input_x_gradient", "integrated_gradients"]
    assert set(attribution.METHODS) == set(REGISTRY) == set(attribution.CLAIMED_AXIOMS)
    assert attribution.CLAIMED_AXIOMS["lrp"] == frozenset({"conservation"})
    assert attribution.CLAIMED_AXIOMS["grad_cam"] == frozenset()
    assert method_aliases()["ig"] == "integrated_gradients"


def test_one_lookup_one_message():
    assert method_named("saliency", "f")[0] == "saliency"
    assert method_named("dl", "f") == ("deeplift", attribution.deeplift)
    with pytest.raises(InvalidParameterError) as error:
        method_named("magic", "check_axioms")
    message = str(error.value)
    assert message.startswith("The 'method' parameter of check_axioms must be one of 'saliency', ")
    assert "ig=integrated_gradients" in message and message.endswith("Got 'magic' instead.")
    with pytest.raises(InvalidParameterError, match="parameter of smoothgrad") as error:
        method_named("smoothgrad", "smoothgrad", exclude=("smoothgrad", "vargrad"))
    assert "'vargrad'" not in str(error.value) and "sg=" not in str(error.value)
    with pytest.raises(InvalidParameterError, match="Got 3 instead"):
        method_named(3, "f")


@pytest.mark.parametrize(
    "caller",
    [
        lambda: attribution.check_axioms(torch.nn.Linear(3, 2), torch.randn(2, 3), method="magic"),
        lambda: attribution.smoothgrad(torch.nn.Linear(3, 2), torch.randn(2, 3), method="magic"),
    ],
)
def test_every_caller_uses_the_one_message(caller):
    with pytest.raises(InvalidParameterError, match=r"must be one of 'saliency'.*\(aliases: .*Got 'magic' instead"):
        caller()


def test_the_report_lists_derive_from_the_registrations():
    images = torch.rand(2, 1, 8, 8)
    full = report_methods(images, "full", 256)
    assert list(full) == [
        "saliency",
        "integrated_gradients",
        "deeplift",
        "lrp",
        "grad_cam",
        "occlusion",
        "input_x_gradient",
    ]
    assert full["integrated_gradients"][1] == {"steps": None, "tol": 0.01, "max_steps": 256}
    assert full["occlusion"][1] == {"window": (1, 2, 2)} and full["lrp"][1] == {"rule": "epsilon_plus"}
    assert full["saliency"][0] is attribution.saliency
    tabular = report_methods(torch.rand(2, 5), "quick", 64)
    assert list(tabular) == ["saliency", "integrated_gradients", "deeplift", "lrp", "shapley"]
    one_hot = torch.nn.functional.one_hot(torch.randint(0, 4, (2, 20)), 4).transpose(1, 2).float()
    assert "ism" in report_methods(one_hot, "quick", 64)
    assert report_axiom_methods("quick", 64) == [("integrated_gradients", {"steps": 64}), ("deeplift", {})]
    assert [name for name, _ in report_axiom_methods("full", 64)] == [
        "integrated_gradients",
        "deeplift",
        "input_x_gradient",
        "occlusion",
        "saliency",
        "lrp",
    ]
    assert report_axiom_methods("unknown budget", 64) == report_axiom_methods("quick", 64)


def test_is_one_hot_accepts_n_columns():
    from deepscope.attribution._registry import is_one_hot

    x = torch.nn.functional.one_hot(torch.tensor([[0, 3, 1, 2]]), 4).transpose(1, 2).float()
    assert is_one_hot(x)
    x[0, :, 2] = 0  # an N: an all-zero column
    assert is_one_hot(x)
    assert not is_one_hot(torch.zeros(1, 4, 3))  # all N is no sequence
    x[0, :, 1] = 1  # two letters at once
    assert not is_one_hot(x)
