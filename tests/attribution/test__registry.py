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


# ------------------------------------------------------------------------------ the inputs each method takes


class _TwoInputs(torch.nn.Module):
    """``forward(sequence (B, 4, 6), features (B, 3))`` with a conv layer (grad_cam) and a ReLU (lrp)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv1d(4, 2, 3)
        self.head = torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(8, 2))
        self.dense = torch.nn.Linear(3, 2)

    def forward(self, sequence: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(sequence)) + self.dense(features)


def _one_hot_pair() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    sequence = torch.nn.functional.one_hot(torch.randint(0, 4, (2, 6), generator=generator), 4).transpose(1, 2)
    return sequence.double(), torch.randn(2, 3, generator=generator, dtype=torch.float64)


_LAYER = {"layer": "conv"}  # the methods that attribute at a layer find it before reading the inputs
_NEEDS = {"attn_lrp": _LAYER, "layer_integrated_gradients": _LAYER, "layer_gradient_x_activation": _LAYER}


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_a_tuple_of_inputs_is_taken_exactly_by_the_methods_registered_to_take_it(name):
    """The registry's ``takes`` is the one home of "which methods take several inputs": every method it
    names returns a MultiInputAttribution for a tuple, every other refuses the tuple naming exactly those."""
    torch.manual_seed(0)
    model = _TwoInputs().double()
    inputs = _one_hot_pair()
    spec = REGISTRY[name]
    if "tuple" in spec.takes:
        result = spec.function(model, inputs, target=0)
        assert isinstance(result, attribution.MultiInputAttribution)
        assert [tuple(v.shape) for v in result.values] == [(2, 4, 6), (2, 3)]
        return
    takers = ", ".join(_registry.methods_taking("tuple"))
    with pytest.raises(InvalidParameterError, match=f"taken as a tuple by {takers}\\)"):
        spec.function(model, inputs, target=0, **_NEEDS.get(name, {}))


def test_the_methods_taking_tuples_and_tokens_are_the_documented_ones():
    # docs/attribution.md's 'Several inputs' section and the token-model section name these
    assert set(_registry.methods_taking("tuple")) == {
        "saliency",
        "input_x_gradient",
        "integrated_gradients",
        "deeplift",
        "deep_lift_shap",
    }
    assert set(_registry.methods_taking("tokens")) == {
        "layer_integrated_gradients",
        "layer_gradient_x_activation",
        "attn_lrp",
        "occlusion",
    }
    assert set(_registry.methods_taking("tensor")) == set(REGISTRY)


@pytest.mark.parametrize("takes", ["tuple", ("tuple",), ("tensor", "dicts")])
def test_input_kinds_must_be_known_and_hold_tensor(scratch_registry, takes):
    with pytest.raises(InvalidParameterError, match="'takes'"):
        attribution_method(aliases=(), claimed_axioms=(), report=None, takes=takes)(lambda model, inputs: inputs)


class _TokenModel(torch.nn.Module):
    """``forward(input_ids)``: embedding, a conv (grad_cam's layer), ReLU, linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = torch.nn.Embedding(10, 4)
        self.conv = torch.nn.Conv1d(4, 2, 2)
        self.head = torch.nn.Linear(4, 2)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        hidden = self.conv(self.embedding(input_ids).transpose(1, 2)).relu()
        return self.head(hidden.flatten(1))


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_token_inputs_are_refused_by_the_methods_not_registered_to_take_them(name):
    # a dict of named tensors is token input for every method (an integer tensor alone is also read as
    # numbers by the perturbation methods, e.g. integer one-hot DNA in ism)
    spec = REGISTRY[name]
    if "tokens" in spec.takes:
        return  # each is run on token models in its own tests (tests/attribution/test__layer.py, test_occlusion.py)
    torch.manual_seed(0)
    takers = ", ".join(_registry.methods_taking("tokens"))
    with pytest.raises(InvalidParameterError, match=f"with {takers}"):
        spec.function(_TokenModel().double(), {"input_ids": torch.tensor([[1, 2, 3], [4, 5, 6]])}, target=0)
