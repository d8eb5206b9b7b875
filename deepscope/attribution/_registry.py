"""The one registry of attribution methods: each method's identity, declared next to its function.

A method is declared with :func:`attribution_method`, stacked above its ``@analysis``
decorator (as zennit registers its composites)::

    @attribution_method(aliases=("ixg",), claimed_axioms={"dummy", ...}, report=ReportDefaults(order=8, full_only=True))
    @analysis(takes="model_inputs", family="attribution")
    def input_x_gradient(model, inputs, target=None, *, ...) -> Attribution: ...

The registration carries everything deepscope says about a method — its name, its short aliases,
the axioms it claims (checked at run time by :func:`deepscope.attribution.check_axioms`) and how
the audit report uses it — and every other view is derived from :data:`REGISTRY`:
``deepscope.attribution.METHODS`` and ``CLAIMED_AXIOMS``, the CLI's ``--method`` aliases, the report
section's method list (:func:`report_methods`, :func:`report_axiom_methods`) and the tests'
parametrisations. Lookup by name is :func:`method_named`, with one message for every caller.

The registry's order is the registration order, i.e. the import order of
``deepscope/attribution/__init__.py``; ``METHODS`` lists the methods in that order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

import torch

from deepscope.attribution._prepare import is_token_inputs
from deepscope.errors import invalid_parameter

__all__ = [
    "AXIOMS",
    "PATH_AXIOMS",
    "MethodSpec",
    "RegistryView",
    "REGISTRY",
    "ReportDefaults",
    "attribution_method",
    "is_tokens",
    "INPUT_KINDS",
    "method_aliases",
    "method_named",
    "methods_taking",
    "report_axiom_methods",
    "report_methods",
]

F = TypeVar("F", bound=Callable[..., Any])

AXIOMS = (
    "completeness",
    "sensitivity",
    "dummy",
    "symmetry",
    "implementation_invariance",
    "linearity",
    "conservation",
)
"""Every axiom :func:`deepscope.attribution.check_axioms` can check (Sundararajan et al., 2017)."""

INPUT_KINDS = ("tensor", "tuple", "tokens")
"""What a method's ``inputs`` may be: a float tensor (every method), a tuple of float tensors for a
model of several inputs ``model(x1, x2, ...)`` (packed by :mod:`._multi_input`), or integer token
ids / a dict of named tensors (the layer methods, which attribute at the embedding, and occlusion)."""

PATH_AXIOMS = frozenset(AXIOMS) - {"conservation"}
"""The axioms of the path methods (integrated gradients, exact Shapley values); conservation is LRP's."""


def _always(inputs: torch.Tensor) -> bool:
    return True


def is_tokens(inputs: Any) -> bool:
    """Token ids or a dict of named tensors: only the layer methods (which attribute at the embedding) apply."""
    return is_token_inputs(inputs)


def is_image_like(inputs: torch.Tensor) -> bool:
    """Images or sequences: ``(batch, channels, *positions)`` (a spatial map and a window make sense)."""
    return inputs.dim() >= 3


def is_one_hot(inputs: torch.Tensor) -> bool:
    """One-hot sequences ``(batch, alphabet, length)``: every position holds one 1, or none (``N``)."""
    if inputs.dim() != 3 or not bool(((inputs == 0) | (inputs == 1)).all()):
        return False
    columns = inputs.sum(1)
    return bool((columns <= 1).all()) and bool((columns == 1).any())


def has_few_features(inputs: torch.Tensor) -> bool:
    """At most 15 features per example (exact Shapley values enumerate 2^15 coalitions)."""
    return inputs[0].numel() <= 15


@dataclasses.dataclass(frozen=True)
class ReportDefaults:
    """How the audit report's Attribution section uses a method.

    Attributes:
        order: the method's column in the maps figure (lower first).
        shown_when: which inputs the map is drawn for (``is_image_like``, ``is_one_hot``,
            ``has_few_features``; default: every input).
        full_only: drawn only at the "full" budget.
        options: ``options(inputs, max_steps) -> dict`` of cheap keyword arguments for the map.
        axiom_budget: ``"quick"`` (its axioms are checked at every budget), ``"full"`` (only at
            the full budget) or None (never).
        axiom_order: the method's place in the axiom table (lower first).
        axiom_options: ``axiom_options(max_steps) -> dict`` for :func:`check_axioms`.
    """

    order: int
    shown_when: Callable[[torch.Tensor], bool] = _always
    full_only: bool = False
    options: Callable[[torch.Tensor, int], dict[str, Any]] | None = None
    axiom_budget: str | None = None
    axiom_order: int = 0
    axiom_options: Callable[[int], dict[str, Any]] | None = None


@dataclasses.dataclass(frozen=True)
class MethodSpec:
    """One registered attribution method: its function and everything deepscope says about it."""

    name: str
    function: Callable[..., Any]
    aliases: tuple[str, ...]
    claimed_axioms: frozenset[str]
    report: ReportDefaults | None
    takes: frozenset[str] = frozenset({"tensor"})


REGISTRY: dict[str, MethodSpec] = {}


class RegistryView(Mapping[str, Any]):
    """A live, read-only ``name -> spec.<field>`` view of :data:`REGISTRY` (``METHODS``, ``CLAIMED_AXIOMS``).

    Example:
        >>> functions = RegistryView("function")
        >>> set(functions) == set(REGISTRY)
        True
    """

    def __init__(self, field: str) -> None:
        self._field = field

    def __getitem__(self, name: str) -> Any:
        return getattr(REGISTRY[name], self._field)

    def __iter__(self) -> Iterator[str]:
        return iter(list(REGISTRY))

    def __len__(self) -> int:
        return len(REGISTRY)

    def __repr__(self) -> str:
        return repr(dict(self))


def _alias_owner(alias: str) -> str | None:
    return next((spec.name for spec in REGISTRY.values() if alias in spec.aliases or alias == spec.name), None)


def attribution_method(
    name: str | None = None,
    *,
    aliases: Iterable[str],
    claimed_axioms: Iterable[str],
    report: ReportDefaults | None,
    takes: Iterable[str] = ("tensor",),
) -> Callable[[F], F]:
    """Register an attribution method with its metadata (all required; say ``()``/``None`` explicitly).

    Args:
        name: the registry name (default: the function's ``@analysis`` name, else its ``__name__``).
        aliases: short names the CLI accepts (``"ig"``); unique across the registry.
        claimed_axioms: the axioms the method promises, a subset of :data:`AXIOMS`.
        report: how the audit report uses it, or None when the report does not show it.
        takes: the kinds of ``inputs`` it accepts, a subset of :data:`INPUT_KINDS` holding ``"tensor"``
            (the input validation refuses the others, naming the methods that take them).

    Returns:
        A decorator that records the function in :data:`REGISTRY` and returns it unchanged.

    Raises:
        InvalidParameterError: an unknown axiom, a taken name or alias, or a non-ReportDefaults report.
    """
    owner = "attribution_method"
    aliases = tuple(aliases)
    claims = frozenset(claimed_axioms)
    unknown = sorted(claims - set(AXIOMS))
    if isinstance(claimed_axioms, str) or unknown:
        raise invalid_parameter("claimed_axioms", owner, f"a set of {', '.join(map(repr, AXIOMS))}", claimed_axioms)
    kinds = frozenset(takes)
    if isinstance(takes, str) or "tensor" not in kinds or kinds - set(INPUT_KINDS):
        raise invalid_parameter("takes", owner, f"a set of {', '.join(map(repr, INPUT_KINDS))} holding 'tensor'", takes)
    if report is not None and not isinstance(report, ReportDefaults):
        raise invalid_parameter("report", owner, "a ReportDefaults or None", report)
    if report is not None and report.axiom_budget not in (None, "quick", "full"):
        raise invalid_parameter("report.axiom_budget", owner, "None, 'quick' or 'full'", report.axiom_budget)

    def register(function: F) -> F:
        spec_name = name or getattr(function, "__deepscope_analysis__", function.__name__)
        for alias in (spec_name, *aliases):
            if not isinstance(alias, str) or not alias:
                raise invalid_parameter("aliases", owner, "non-empty names (str)", alias)
            taken = _alias_owner(alias)
            if taken is not None and taken != spec_name:
                raise invalid_parameter("aliases", owner, f"names no other method uses ({taken} has it)", alias)
        REGISTRY[spec_name] = MethodSpec(spec_name, function, aliases, claims, report, kinds)
        return function

    return register


def methods_taking(kind: str) -> tuple[str, ...]:
    """The registered methods whose ``inputs`` may be of this kind (one of :data:`INPUT_KINDS`), in registry order."""
    return tuple(spec.name for spec in REGISTRY.values() if kind in spec.takes)


def method_named(
    method: Any, owner: str, parameter: str = "method", *, exclude: Iterable[str] = ()
) -> tuple[str, Callable[..., Any]]:
    """``(name, function)`` of the registered method called ``method`` (its name or an alias).

    The one lookup by name, with the one message: ``The 'method' parameter of <owner> must be one
    of 'saliency', ... (aliases: ig=integrated_gradients, ...). Got 'magic' instead.``

    Args:
        method: a method name or alias (str).
        owner: the public function doing the lookup (named in the message).
        parameter: the parameter's name in that function.
        exclude: names this caller cannot take (e.g. smoothgrad cannot smooth itself).

    Raises:
        InvalidParameterError: not the name or alias of a registered (and not excluded) method.
    """
    excluded = set(exclude)
    choices = {spec.name: spec for spec in REGISTRY.values() if spec.name not in excluded}
    if isinstance(method, str):
        name = method if method in choices else next((n for n, s in choices.items() if method in s.aliases), None)
        if name is not None:
            return name, choices[name].function
    aliases = ", ".join(f"{alias}={spec.name}" for spec in choices.values() for alias in spec.aliases)
    expected = f"one of {', '.join(map(repr, choices))}" + (f" (aliases: {aliases})" if aliases else "")
    raise invalid_parameter(parameter, owner, expected, method)


def report_methods(inputs: Any, budget: str, max_steps: int) -> dict[str, tuple[Callable[..., Any], dict]]:
    """The methods the report draws for these inputs at this budget: ``name -> (function, options)``.

    Token inputs (ids or a dict of tensors) get the methods declared ``shown_when=is_tokens`` and only
    those; every other input gets the others (their predicates are never asked about tokens).
    """
    tokens = is_tokens(inputs)
    chosen = [
        spec
        for spec in REGISTRY.values()
        if spec.report is not None
        and (spec.report.shown_when is is_tokens) == tokens
        and spec.report.shown_when(inputs)
        and (budget == "full" or not spec.report.full_only)
    ]
    chosen.sort(key=lambda spec: spec.report.order)  # type: ignore[union-attr]
    return {
        spec.name: (spec.function, spec.report.options(inputs, max_steps) if spec.report.options else {})  # type: ignore[union-attr]
        for spec in chosen
    }


def report_axiom_methods(budget: str, max_steps: int) -> list[tuple[str, dict[str, Any]]]:
    """``(name, options)`` of the methods whose axioms the report checks at this budget, in table order."""
    levels = ("quick", "full") if budget == "full" else ("quick",)
    chosen = [spec for spec in REGISTRY.values() if spec.report is not None and spec.report.axiom_budget in levels]
    chosen.sort(key=lambda spec: spec.report.axiom_order)  # type: ignore[union-attr]
    return [
        (spec.name, spec.report.axiom_options(max_steps) if spec.report.axiom_options else {})  # type: ignore[union-attr]
        for spec in chosen
    ]


def method_aliases() -> Mapping[str, str]:
    """``alias -> name`` for every registered alias (the CLI's short names)."""
    return {alias: spec.name for spec in REGISTRY.values() for alias in spec.aliases}
