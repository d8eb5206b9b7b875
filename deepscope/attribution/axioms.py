"""Run-time checks of the attribution axioms (Sundararajan et al., 2017) for any method.

Each check builds its own small experiment around the caller's model — a wrapper with an ignored
input channel (dummy), a wrapper symmetric in two features (symmetry), a functionally equal network
with different internals (implementation invariance), a weighted sum of two outputs (linearity) —
and reports held/violated with a magnitude, never by exact float equality.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from deepscope._validation import check_float
from deepscope.attribution._base import Attribution, make_forward
from deepscope.attribution._prepare import prepare_inputs, resolve_targets
from deepscope.attribution._registry import AXIOMS, RegistryView, method_named
from deepscope.errors import DeepscopeError, InvalidParameterError, describe, invalid_parameter
from deepscope.registry import analysis
from deepscope.results import Result

__all__ = ["check_axioms", "AxiomReport", "CLAIMED_AXIOMS", "AXIOMS"]

CLAIMED_AXIOMS: Mapping[str, frozenset[str]] = RegistryView("claimed_axioms")
"""name -> the axioms the method claims, as registered with the method (a live view of the registry)."""


@dataclasses.dataclass(frozen=True)
class AxiomReport(Result):
    """Which axioms a method satisfied on these inputs.

    Attributes:
        method: the method's name.
        checks: one dict per axiom: ``axiom``, ``claimed`` (the method promises it), ``status``
            ("held", "violated" or "not applicable"), ``magnitude`` (the relative size of the
            violation; 0 is perfect), ``tolerance`` and ``detail`` (one sentence).
    """

    method: str
    checks: list[dict[str, Any]]

    def rows(self) -> list[dict[str, Any]]:
        """One row per axiom."""
        return [{"method": self.method, **check} for check in self.checks]

    @property
    def violated_claims(self) -> list[str]:
        """Axioms the method claims but violated here (a bug or an inapplicable model)."""
        return [c["axiom"] for c in self.checks if c["claimed"] and c["status"] == "violated"]


def _method(method: str | Callable[..., Attribution]) -> tuple[str, Callable[..., Attribution]]:
    if isinstance(method, str):
        return method_named(method, "check_axioms")
    if not callable(method):
        raise invalid_parameter("method", "check_axioms", "an attribution function or its name", method)
    return getattr(method, "__deepscope_analysis__", getattr(method, "__name__", "method")), method


def _check_options(function: Callable[..., Attribution], name: str, options: dict[str, Any]) -> None:
    """A keyword neither check_axioms nor the method accepts is check_axioms's error (a typo), named as such."""
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    accepted = [p for p, spec in parameters.items() if spec.kind is not inspect.Parameter.VAR_POSITIONAL][3:]
    own = ["method", "axioms", "completeness_tolerance", "tolerance"]
    unknown = [key for key in options if key not in parameters]
    if unknown:
        raise InvalidParameterError(
            f"check_axioms got an unknown keyword argument '{unknown[0]}'; it accepts {', '.join(own)} and the "
            f"options of {name}: {', '.join(accepted) or 'none'}. Got {unknown[0]}={describe(options[unknown[0]])}."
        )


def _relative(difference: torch.Tensor, scale: torch.Tensor) -> float:
    """max |difference| / max |scale|, with a floor so that all-zero maps compare as equal."""
    return float(difference.abs().max() / scale.abs().max().clamp_min(1e-12))


def _projection(matrix: torch.Tensor, out_shape: tuple[int, ...]) -> nn.Sequential:
    """Flatten → bias-free Linear with a fixed matrix → Unflatten (a plain chain, so every method handles it)."""
    layer = nn.Linear(matrix.shape[1], matrix.shape[0], bias=False)
    layer.weight = nn.Parameter(matrix, requires_grad=False)
    return nn.Sequential(nn.Flatten(), layer, nn.Unflatten(1, out_shape))


def _wrap(front: nn.Sequential, model: nn.Module) -> nn.Sequential:
    """front → model, flattened into one Sequential when the model is one (LRP needs a chain)."""
    body = list(model) if isinstance(model, nn.Sequential) else [model]
    return nn.Sequential(*front, *body)


@analysis(takes="model_inputs", family="attribution", fixture="mlp", example_kwargs={"method": "saliency"})
def check_axioms(
    model: nn.Module,
    inputs: torch.Tensor,
    target: Any = None,
    *,
    method: str | Callable[..., Attribution] = "integrated_gradients",
    axioms: tuple[str, ...] | None = None,
    completeness_tolerance: float = 0.01,
    tolerance: float = 1e-4,
    **method_options: Any,
) -> AxiomReport:
    """Check an attribution method's axioms at run time on ``inputs`` (Sundararajan et al., 2017).

    * completeness: |Σφ − (F(x) − F(x'))| / |F(x) − F(x')| ≤ ``completeness_tolerance`` (x' = 0);
    * sensitivity: x and x' differing in one feature with F(x) ≠ F(x') give that feature φ ≠ 0;
    * dummy: an extra input channel the model ignores gets |φ| ≤ tolerance · max|φ|;
    * symmetry: for a model symmetric in two features with x_i = x_j, x'_i = x'_j: φ_i ≈ φ_j;
    * implementation invariance: the model and the model behind an identity-equivalent block
      z ↦ ReLU(z) − ReLU(−z) get the same map;
    * linearity: φ of a·F_0 + b·F_1 equals a·φ(F_0) + b·φ(F_1) (a = 2, b = −0.5);
    * conservation (LRP): Σ relevance = F(x).

    Magnitudes are relative (scaled to |F(x) − F(x')| or max|φ|); "held" means magnitude ≤ tolerance.

    Args:
        model: the classifier; inputs: ``(batch, *features)`` (a handful of examples).
        target: as for every method (None: the predicted class).
        method: a name from ``METHODS`` or an attribution function.
        axioms: which to check (default: all that apply).
        completeness_tolerance: relative tolerance of completeness/conservation.
        tolerance: relative tolerance of the other checks (float32 rounding is ~1e-7).
        method_options: passed to every call of the method (e.g. ``steps=128``).

    Returns:
        An :class:`AxiomReport`.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 2))
        >>> report = check_axioms(net, torch.randn(3, 4), method="integrated_gradients", steps=64)
        >>> report.violated_claims
        []
    """
    owner = "check_axioms"
    name, function = _method(method)
    completeness_tolerance = check_float(completeness_tolerance, "completeness_tolerance", owner, minimum=0.0)
    tolerance = check_float(tolerance, "tolerance", owner, minimum=0.0)
    if axioms is not None and (isinstance(axioms, str) or not isinstance(axioms, (list, tuple, set, frozenset))):
        raise invalid_parameter("axioms", owner, f"None or a tuple of {', '.join(map(repr, AXIOMS))}", axioms)
    chosen = AXIOMS if axioms is None else tuple(axioms)
    for axiom in chosen:
        if axiom not in AXIOMS:
            raise invalid_parameter("axioms", owner, f"a tuple of {', '.join(map(repr, AXIOMS))}", axioms)
    _check_options(function, name, method_options)
    claims = CLAIMED_AXIOMS.get(name, frozenset())
    if name != "lrp":
        chosen = tuple(a for a in chosen if a != "conservation")
    if not isinstance(model, nn.Module):
        raise invalid_parameter("model", owner, "a torch.nn.Module", model)
    if isinstance(target, (list, tuple)) or (isinstance(target, torch.Tensor) and target.dim() > 1):
        raise invalid_parameter("target", owner, "None, an int or a (batch,) tensor (one target per example)", target)
    x = prepare_inputs(model, inputs, owner).detach()  # a checked copy: tensor, float, finite, batched
    forward = make_forward(model, method_options.get("output_fn"), owner)
    # the shared checks: a model that cannot take the inputs (DataError), a target of the wrong
    # type or out of range (InvalidParameterError); targets (1, batch) -> one per example
    targets = resolve_targets(forward, x, target, owner)[0][0]
    with torch.no_grad():
        logits = forward(x)
    takes_baseline = "baseline" in inspect.signature(function).parameters

    def attribute(net: nn.Module, points: torch.Tensor, chosen_target: Any = None, **extra: Any) -> Attribution:
        return function(net, points, targets if chosen_target is None else chosen_target, **method_options, **extra)

    checks = []
    for axiom in chosen:
        limit = completeness_tolerance if axiom in ("completeness", "conservation") else tolerance
        try:
            magnitude, detail = _CHECKS[axiom](model, x, attribute, forward, targets, takes_baseline, logits)
            status = "held" if magnitude <= limit else "violated"
        except DeepscopeError as error:
            magnitude, detail, status = float("nan"), str(error), "not applicable"
        checks.append(
            {
                "axiom": axiom,
                "claimed": axiom in claims,
                "status": status,
                "magnitude": magnitude,
                "tolerance": limit,
                "detail": detail,
            }
        )
    return AxiomReport(method=name, checks=checks)


def _selected(forward, points, targets) -> torch.Tensor:
    with torch.no_grad():
        outputs = forward(points)
    index = targets if isinstance(targets, torch.Tensor) else torch.full((len(points),), int(targets))
    return outputs.gather(1, index.to(outputs.device).view(-1, 1)).squeeze(1)


def _completeness(model, x, attribute, forward, targets, takes_baseline, logits):
    if not takes_baseline:
        raise DeepscopeError("completeness needs a method with a baseline; this one has none.")
    result = attribute(model, x)
    totals = result.values.flatten(1).sum(1)
    delta = _selected(forward, x, targets) - _selected(forward, torch.zeros_like(x), targets)
    floor = 1e-7 * logits.abs().max() + 1e-12
    magnitude = float(((totals - delta).abs() / delta.abs().clamp_min(float(floor))).max())
    return magnitude, f"largest |Σφ − ΔF| / |ΔF| over {len(x)} examples (baseline 0)"


def _conservation(model, x, attribute, forward, targets, takes_baseline, logits):
    result = attribute(model, x)
    totals = result.values.flatten(1).sum(1)
    outputs = _selected(forward, x, targets)
    magnitude = float(((totals - outputs).abs() / outputs.abs().clamp_min(1e-12)).max())
    return magnitude, "largest |Σ relevance − F(x)| / |F(x)| (biases and stabilisers absorb relevance)"


def _sensitivity(model, x, attribute, forward, targets, takes_baseline, logits):
    # x'' = 0 except one feature (of the 8 largest |x_k|, the one that moves F most); it must get φ ≠ 0
    flat = x.flatten(1)
    per_example = torch.as_tensor(targets).to(x.device).expand(len(x)) if not isinstance(targets, int) else None
    per_example = torch.full((len(x),), targets, device=x.device) if per_example is None else per_example
    at_zero = _selected(forward, torch.zeros_like(x), per_example)
    candidates = flat.abs().argsort(dim=1, descending=True)[:, : min(8, flat.shape[1])]
    points, features, changes = [], [], []
    for i in range(len(x)):
        trial = torch.zeros(candidates.shape[1], flat.shape[1], dtype=x.dtype, device=x.device)
        trial[torch.arange(candidates.shape[1]), candidates[i]] = flat[i, candidates[i]]
        change = _selected(forward, trial.view(-1, *x.shape[1:]), per_example[i].repeat(len(trial))) - at_zero[i]
        k = int(change.abs().argmax())
        points.append(trial[k])
        features.append(candidates[i, k])
        changes.append(change[k])
    change = torch.stack(changes)
    relevant = change.abs() > 1e-6 * logits.abs().max()
    if not bool(relevant.any()):
        raise DeepscopeError("no single feature changes the output here; sensitivity cannot be tested.")
    result = attribute(model, torch.stack(points).view_as(x))
    score = result.values.flatten(1).gather(1, torch.stack(features).view(-1, 1)).squeeze(1)
    # 1 where the feature that changed F got a (near) zero score, else 0
    missed = (score.abs() <= 1e-6 * change.abs()).to(x.dtype)
    return float(missed[relevant].max()), "inputs differing from 0 in one feature that changes F: does it get φ ≠ 0?"


def _dummy(model, x, attribute, forward, targets, takes_baseline, logits):
    # one extra channel along dim 1 (the last one) that the wrapper drops before calling the model
    channels, per_channel = x.shape[1], math.prod(x.shape[2:])
    size = (channels + 1) * per_channel
    matrix = torch.eye(size, dtype=x.dtype, device=x.device)[: channels * per_channel]
    wrapper = _wrap(_projection(matrix, tuple(x.shape[1:])), model)
    extended = torch.cat([x, 1.0 + torch.rand_like(x[:, :1])], dim=1)
    values = attribute(wrapper, extended).values
    return _relative(values[:, channels], values), "an extra input channel the model ignores: max|φ_dummy| / max|φ|"


def _symmetry(model, x, attribute, forward, targets, takes_baseline, logits):
    size = math.prod(x.shape[1:])
    if size < 2:
        raise DeepscopeError("symmetry needs at least two features.")
    matrix = torch.eye(size, dtype=x.dtype, device=x.device)
    matrix[0, :2] = matrix[1, :2] = 0.5  # features 0 and 1 enter only through their mean
    wrapper = _wrap(_projection(matrix, tuple(x.shape[1:])), model)
    flat = x.flatten(1).clone()
    flat[:, 1] = flat[:, 0]
    result = attribute(wrapper, flat.view_as(x))
    values = result.values.flatten(1)
    return _relative(
        values[:, 0] - values[:, 1], values
    ), "a model symmetric in features 0 and 1, x_0 = x_1: |φ_0 − φ_1| / max|φ|"


def _implementation_invariance(model, x, attribute, forward, targets, takes_baseline, logits):
    size = math.prod(x.shape[1:])
    identity = torch.eye(size, dtype=x.dtype, device=x.device)
    split = nn.Linear(size, 2 * size, bias=False)
    split.weight = nn.Parameter(torch.cat([identity, -identity]), requires_grad=False)
    merge = nn.Linear(2 * size, size, bias=False)
    merge.weight = nn.Parameter(torch.cat([identity, -identity], dim=1), requires_grad=False)
    front = nn.Sequential(nn.Flatten(), split, nn.ReLU(), merge, nn.Unflatten(1, tuple(x.shape[1:])))
    twin = _wrap(front, model)  # ReLU(z) − ReLU(−z) = z: the same function, different internals
    original, reparametrised = attribute(model, x), attribute(twin, x)
    return _relative(original.values - reparametrised.values, original.values), (
        "the model vs. the model behind z ↦ ReLU(z) − ReLU(−z): max|φ − φ'| / max|φ|"
    )


def _linearity(model, x, attribute, forward, targets, takes_baseline, logits):
    classes = logits.shape[1]
    if classes < 2:
        raise DeepscopeError("linearity needs a model with at least two outputs.")
    a, b = 2.0, -0.5
    head = nn.Linear(classes, 1, bias=False)
    weight = torch.zeros(1, classes, dtype=x.dtype, device=x.device)
    weight[0, 0], weight[0, 1] = a, b
    head.weight = nn.Parameter(weight, requires_grad=False)
    combined = _wrap(nn.Sequential(), model)
    combined.append(head)
    phi = attribute(combined, x, 0).values
    expected = a * attribute(model, x, 0).values + b * attribute(model, x, 1).values
    return _relative(phi - expected, expected), "φ(2·F_0 − 0.5·F_1) vs 2·φ(F_0) − 0.5·φ(F_1): max difference / max|φ|"


_CHECKS = {
    "completeness": _completeness,
    "conservation": _conservation,
    "sensitivity": _sensitivity,
    "dummy": _dummy,
    "symmetry": _symmetry,
    "implementation_invariance": _implementation_invariance,
    "linearity": _linearity,
}
