"""Layer-wise relevance propagation with epsilon, gamma, z+ and alpha-beta rules, composites by layer type,
BatchNorm merged into the preceding layer, residual sums and concatenations, and conservation reported."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from deepscope._validation import check_float
from deepscope.attribution._base import DEFAULT_MAX_BATCH, Attribution, OutputFn, finish, prepare
from deepscope.attribution._lrp_graph import LrpGraph, Step, stabilise
from deepscope.attribution._registry import ReportDefaults, attribution_method
from deepscope.errors import invalid_parameter
from deepscope.registry import analysis

__all__ = ["lrp", "COMPOSITES", "RULES"]

RULES = ("epsilon", "gamma", "zplus", "alpha_beta")
COMPOSITES: dict[str, dict[str, str]] = {
    # Kohlbrenner et al. (2020) / zennit presets: convolutions get a positive rule, dense layers epsilon
    "epsilon_plus": {"conv": "zplus", "linear": "epsilon"},
    "epsilon_gamma": {"conv": "gamma", "linear": "epsilon"},
    "epsilon_alpha_beta": {"conv": "alpha_beta", "linear": "epsilon"},
}


def _propagate(
    step: Step, a: torch.Tensor, relevance: torch.Tensor, rule: str, options: dict[str, float]
) -> torch.Tensor:
    """Relevance at the step's input from the relevance at its output (the gradient trick of Montavon et al., 2019)."""
    epsilon = options["epsilon"]

    def redistribute(a_part: torch.Tensor, weight: torch.Tensor | None, bias: Any, share: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            leaf = a_part.detach().requires_grad_(True)
            z = step.run(leaf, weight, bias)
            (c,) = torch.autograd.grad(z, leaf, share)
        return a_part * c

    if step.kind in ("pool",) or rule == "epsilon":
        z = step.run(a)
        return redistribute(a, None, "same", relevance / stabilise(z, epsilon))
    w, b = step.weight, step.bias
    if rule == "gamma":
        gamma = options["gamma"]
        w_g, b_g = w + gamma * w.clamp_min(0), b + gamma * b.clamp_min(0)
        z = step.run(a, w_g, b_g)
        return redistribute(a, w_g, b_g, relevance / stabilise(z, epsilon))
    if rule == "zplus":
        positive = a.clamp_min(0)
        z = step.run(positive, w.clamp_min(0), None)
        return redistribute(positive, w.clamp_min(0), None, relevance / stabilise(z, epsilon))
    alpha, beta = options["alpha"], options["beta"]
    a_plus, a_minus = a.clamp_min(0), a.clamp_max(0)
    w_plus, w_minus = w.clamp_min(0), w.clamp_max(0)
    z_plus = step.run(a_plus, w_plus, b.clamp_min(0)) + step.run(a_minus, w_minus, None)
    z_minus = step.run(a_plus, w_minus, b.clamp_max(0)) + step.run(a_minus, w_plus, None)
    share_plus = relevance / stabilise(z_plus, epsilon)
    share_minus = relevance / stabilise(z_minus, epsilon)
    positive = redistribute(a_plus, w_plus, None, share_plus) + redistribute(a_minus, w_minus, None, share_plus)
    negative = redistribute(a_plus, w_minus, None, share_minus) + redistribute(a_minus, w_plus, None, share_minus)
    return alpha * positive - beta * negative


def _rule_for(step: Step, rule: str | Mapping[Any, str]) -> str:
    if isinstance(rule, str):
        return rule
    for key in (type(step.module), type(step.module).__name__, step.kind):
        if key in rule:
            return rule[key]
    return "epsilon"


def _report_options(inputs: torch.Tensor, max_steps: int) -> dict[str, Any]:
    """The zennit/Kohlbrenner preset: z+ on convolutions, epsilon on dense layers (plain epsilon for MLPs)."""
    return {"rule": "epsilon_plus"}


@attribution_method(
    aliases=(),
    claimed_axioms={"conservation"},
    report=ReportDefaults(order=3, options=_report_options, axiom_budget="full", axiom_order=5),
)
@analysis(takes="model_inputs", family="attribution", fixture="cnn")
def lrp(
    model: nn.Module,
    inputs: torch.Tensor,
    target: Any = None,
    *,
    rule: str | Mapping[Any, str] = "epsilon",
    epsilon: float = 1e-9,
    gamma: float = 0.25,
    alpha: float = 1.0,
    beta: float = 0.0,
    output_fn: OutputFn | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> Attribution:
    """Layer-wise relevance propagation (Bach et al., 2015; rules as in Montavon et al., 2019).

    Starting from R = F(x) at the target output, each affine layer z_j = Σ_i a_i w_ij + b_j passes
    R_i = Σ_j a_i ρ(w_ij) / (ε·sign(z_j) + Σ_i a_i ρ(w_ij) [+ ρ(b_j)]) R_j back, with ρ given by the
    rule: "epsilon" (ρ = id), "gamma" (ρ(w) = w + γw⁺), "zplus" (positive inputs and weights only),
    "alpha_beta" (α·positive − β·negative contributions, α − β = 1). Pools use the epsilon rule,
    activations pass relevance unchanged, a sum z = a + b passes R_a = a·R/(z + ε·sign z) to each
    operand and a concatenation splits R by slices; a tensor used twice collects both shares.
    BatchNorm is folded into the preceding Linear/Conv layer first. Conservation, Σ_i R_i = F(x), holds exactly for bias-free ReLU nets with ε → 0; biases
    absorb relevance, and the relative conservation error is reported per example.

    Args:
        model: any module torch.fx can trace whose steps are Linear/Conv/BatchNorm/pool/activation/
            reshape layers (modules or functions), sums (residual connections) and concatenations;
            softmax, products of two activations and attention are refused with the step named.
        inputs, target, max_batch: as for every method.
        output_fn: for a model returning a tuple or dict, picks the class scores; it must return
            one of the returned tensors unchanged (``lambda out: out[0]``, ``out["logits"]``),
            since relevance starts at a step of the model.
        rule: a rule for every affine layer, a composite name from :data:`COMPOSITES`
            ("epsilon_plus", "epsilon_gamma", "epsilon_alpha_beta"), or a mapping from layer type
            (class, class name, or "linear"/"conv") to a rule.
        epsilon, gamma, alpha, beta: the rules' parameters.

    Returns:
        An :class:`Attribution`; diagnostics ``conservation_error`` (|ΣR − F(x)| / |F(x)|) and
        ``relevance_sum``.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4, bias=False), torch.nn.ReLU(), torch.nn.Linear(4, 2, bias=False))
        >>> a = lrp(net, torch.randn(2, 3), target=0)
        >>> bool(a.diagnostics["conservation_error"].max() < 1e-6)
        True
    """
    owner = "lrp"
    if isinstance(rule, str) and rule in COMPOSITES:
        rule = COMPOSITES[rule]
    rules = [rule] if isinstance(rule, str) else list(rule.values()) if isinstance(rule, Mapping) else None
    if rules is None or any(r not in RULES for r in rules):
        expected = f"one of {', '.join(map(repr, RULES + tuple(COMPOSITES)))} or a mapping from layer type to rule"
        raise invalid_parameter("rule", owner, expected, rule)
    options = {
        "epsilon": check_float(epsilon, "epsilon", owner, minimum=0.0),
        "gamma": check_float(gamma, "gamma", owner, minimum=0.0),
        "alpha": check_float(alpha, "alpha", owner, minimum=0.0),
        "beta": check_float(beta, "beta", owner, minimum=0.0),
    }
    prepared = prepare(model, inputs, target, owner=owner, output_fn=output_fn, max_batch=max_batch)
    x, targets = prepared.inputs, prepared.targets
    graph = LrpGraph(model, output_fn)

    def propagate(step: Step, a: torch.Tensor, relevance: torch.Tensor) -> torch.Tensor:
        return _propagate(step, a, relevance, _rule_for(step, rule), options).detach()

    values = torch.empty((targets.shape[0], *x.shape), dtype=x.dtype, device=x.device)
    outputs = torch.empty(targets.shape, dtype=x.dtype, device=x.device)
    for start in range(0, x.shape[0], prepared.max_batch):
        stop = min(start + prepared.max_batch, x.shape[0])
        with torch.no_grad():
            activations = graph.forward(x[start:stop])
        logits = activations[graph.output]
        for t in range(targets.shape[0]):
            chosen = targets[t, start:stop].unsqueeze(1)
            relevance = torch.zeros_like(logits).scatter_(1, chosen, logits.gather(1, chosen))
            values[t, start:stop] = graph.relevance(activations, relevance, propagate, options["epsilon"])
            outputs[t, start:stop] = logits.gather(1, chosen).squeeze(1)
    totals = values.flatten(2).sum(2)
    error = (totals - outputs).abs() / outputs.abs().clamp_min(1e-12)
    rule_name = (
        rule if isinstance(rule, str) else {str(k if isinstance(k, str) else k.__name__): v for k, v in rule.items()}
    )
    return finish(
        model,
        values=values,
        targets=targets,
        multi=prepared.multi,
        method=owner,
        diagnostics={"conservation_error": error, "relevance_sum": totals},
        evaluations=prepared.evaluations + x.shape[0],
        options={"rule": str(rule_name), **options, "max_batch": prepared.max_batch},
    )
