"""Layer-wise relevance propagation with epsilon, gamma, z+ and alpha-beta rules, composites by layer type,
BatchNorm merged into the preceding layer, and conservation reported."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from deepscope._validation import check_float
from deepscope.attribution._base import DEFAULT_MAX_BATCH, Attribution, finish, prepare
from deepscope.attribution._lrp_chain import FunctionStep, layer_chain
from deepscope.errors import UnsupportedModelError, invalid_parameter
from deepscope.registry import analysis

__all__ = ["lrp", "COMPOSITES", "RULES"]

RULES = ("epsilon", "gamma", "zplus", "alpha_beta")
COMPOSITES: dict[str, dict[str, str]] = {
    # Kohlbrenner et al. (2020) / zennit presets: convolutions get a positive rule, dense layers epsilon
    "epsilon_plus": {"conv": "zplus", "linear": "epsilon"},
    "epsilon_gamma": {"conv": "gamma", "linear": "epsilon"},
    "epsilon_alpha_beta": {"conv": "alpha_beta", "linear": "epsilon"},
}
_PASS_THROUGH = (
    nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Softplus, nn.Identity,
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
)  # fmt: skip
_POOLS = (
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
)  # fmt: skip
_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@dataclasses.dataclass
class _Step:
    """One step of the flattened network: an affine layer (weights possibly BN-merged), a pool, or a reshape."""

    kind: str  # "linear", "conv", "pool", "reshape", "pass"
    module: nn.Module
    weight: torch.Tensor | None = None
    bias: torch.Tensor | None = None

    def run(self, a: torch.Tensor, weight: torch.Tensor | None = None, bias: Any = "same") -> torch.Tensor:
        weight = self.weight if weight is None else weight
        bias = self.bias if isinstance(bias, str) else bias
        if self.kind == "linear":
            return F.linear(a, weight, bias)
        if self.kind == "conv":
            m = self.module
            return m._conv_forward(a, weight, bias) if hasattr(m, "_conv_forward") else m(a)
        return self.module(a)


def _steps(model: nn.Module) -> list[_Step]:
    """The network as a chain of steps, BatchNorm folded into the preceding Linear/Conv (eval statistics)."""
    steps: list[_Step] = []
    for module in layer_chain(model):
        if isinstance(module, FunctionStep):
            steps.append(_Step(module.kind, module))
        elif isinstance(module, nn.Linear):
            steps.append(_Step("linear", module, module.weight.detach(), _bias(module)))
        elif isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            steps.append(_Step("conv", module, module.weight.detach(), _bias(module)))
        elif isinstance(module, _BATCHNORMS):
            if not steps or steps[-1].kind not in ("linear", "conv"):
                raise UnsupportedModelError(
                    "lrp merges BatchNorm into the preceding Linear/Conv layer; none precedes it."
                )
            previous = steps[-1]
            scale = module.weight.detach() if module.affine else torch.ones_like(module.running_var)
            shift = module.bias.detach() if module.affine else torch.zeros_like(module.running_mean)
            if module.running_var is None:
                raise UnsupportedModelError("lrp needs BatchNorm running statistics (track_running_stats=True).")
            factor = scale / torch.sqrt(module.running_var + module.eps)
            shape = (-1,) + (1,) * (previous.weight.dim() - 1)
            previous.weight = previous.weight * factor.view(shape)
            previous.bias = (previous.bias - module.running_mean) * factor + shift
        elif isinstance(module, _POOLS):
            steps.append(_Step("pool", module))
        elif isinstance(module, (nn.Flatten, nn.Unflatten)):
            steps.append(_Step("reshape", module))
        elif isinstance(module, _PASS_THROUGH):
            steps.append(_Step("pass", module))
        else:
            raise UnsupportedModelError(
                f"lrp supports chains of Linear/Conv/BatchNorm/pooling/activation/reshape layers; "
                f"got a {type(module).__name__}."
            )
    return steps


def _bias(module: nn.Module) -> torch.Tensor:
    out = module.weight.shape[0]
    return (
        module.bias.detach()
        if module.bias is not None
        else torch.zeros(out, dtype=module.weight.dtype, device=module.weight.device)
    )


def _stabilise(z: torch.Tensor, epsilon: float) -> torch.Tensor:
    sign = torch.where(z >= 0, 1.0, -1.0).to(z.dtype)
    return z + epsilon * sign


def _propagate(
    step: _Step, a: torch.Tensor, relevance: torch.Tensor, rule: str, options: dict[str, float]
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
        return redistribute(a, None, "same", relevance / _stabilise(z, epsilon))
    w, b = step.weight, step.bias
    if rule == "gamma":
        gamma = options["gamma"]
        w_g, b_g = w + gamma * w.clamp_min(0), b + gamma * b.clamp_min(0)
        z = step.run(a, w_g, b_g)
        return redistribute(a, w_g, b_g, relevance / _stabilise(z, epsilon))
    if rule == "zplus":
        positive = a.clamp_min(0)
        z = step.run(positive, w.clamp_min(0), None)
        return redistribute(positive, w.clamp_min(0), None, relevance / _stabilise(z, epsilon))
    alpha, beta = options["alpha"], options["beta"]
    a_plus, a_minus = a.clamp_min(0), a.clamp_max(0)
    w_plus, w_minus = w.clamp_min(0), w.clamp_max(0)
    z_plus = step.run(a_plus, w_plus, b.clamp_min(0)) + step.run(a_minus, w_minus, None)
    z_minus = step.run(a_plus, w_minus, b.clamp_max(0)) + step.run(a_minus, w_plus, None)
    share_plus = relevance / _stabilise(z_plus, epsilon)
    share_minus = relevance / _stabilise(z_minus, epsilon)
    positive = redistribute(a_plus, w_plus, None, share_plus) + redistribute(a_minus, w_minus, None, share_plus)
    negative = redistribute(a_plus, w_minus, None, share_minus) + redistribute(a_minus, w_plus, None, share_minus)
    return alpha * positive - beta * negative


def _rule_for(step: _Step, rule: str | Mapping[Any, str]) -> str:
    if isinstance(rule, str):
        return rule
    for key in (type(step.module), type(step.module).__name__, step.kind):
        if key in rule:
            return rule[key]
    return "epsilon"


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
    max_batch: int = DEFAULT_MAX_BATCH,
) -> Attribution:
    """Layer-wise relevance propagation (Bach et al., 2015; rules as in Montavon et al., 2019).

    Starting from R = F(x) at the target output, each affine layer z_j = Σ_i a_i w_ij + b_j passes
    R_i = Σ_j a_i ρ(w_ij) / (ε·sign(z_j) + Σ_i a_i ρ(w_ij) [+ ρ(b_j)]) R_j back, with ρ given by the
    rule: "epsilon" (ρ = id), "gamma" (ρ(w) = w + γw⁺), "zplus" (positive inputs and weights only),
    "alpha_beta" (α·positive − β·negative contributions, α − β = 1). Pools use the epsilon rule,
    activations pass relevance unchanged. BatchNorm is folded into the preceding Linear/Conv layer
    first. Conservation, Σ_i R_i = F(x), holds exactly for bias-free ReLU nets with ε → 0; biases
    absorb relevance, and the relative conservation error is reported per example.

    Args:
        model: a chain of Linear/Conv/BatchNorm/pool/activation/reshape layers: an ``nn.Sequential``
            (nested allowed) or any module whose ``forward`` torch.fx traces as a chain
            (functional activations, pools and ``view``/``flatten`` included; residual additions and
            concatenations are refused).
        inputs, target, max_batch: as for every method.
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
    prepared = prepare(model, inputs, target, owner=owner, max_batch=max_batch)
    x, targets = prepared.inputs, prepared.targets
    steps = _steps(model)
    values = torch.empty((targets.shape[0], *x.shape), dtype=x.dtype, device=x.device)
    outputs = torch.empty(targets.shape, dtype=x.dtype, device=x.device)
    for start in range(0, x.shape[0], prepared.max_batch):
        stop = min(start + prepared.max_batch, x.shape[0])
        activations = [x[start:stop]]
        with torch.no_grad():
            for step in steps:
                activations.append(step.run(activations[-1]))
        logits = activations[-1]
        for t in range(targets.shape[0]):
            chosen = targets[t, start:stop].unsqueeze(1)
            relevance = torch.zeros_like(logits).scatter_(1, chosen, logits.gather(1, chosen))
            for step, a in zip(reversed(steps), reversed(activations[:-1])):
                if step.kind == "pass":
                    continue
                if step.kind == "reshape":
                    relevance = relevance.reshape(a.shape)
                    continue
                relevance = _propagate(step, a, relevance, _rule_for(step, rule), options).detach()
            values[t, start:stop] = relevance
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
