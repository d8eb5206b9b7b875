"""DeepLIFT (rescale rule) without module hooks: a torch.fx graph run on (input, baseline) pairs
whose non-linear steps carry modified backward passes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from deepscope._validation import check_float
from deepscope.attribution._base import (
    DEFAULT_MAX_BATCH,
    Attribution,
    OutputFn,
    finish,
    prepare,
    prepare_baseline,
    relative_completeness_error,
)
from deepscope.attribution._deeplift_graph import (
    ELEMENTWISE_FUNCTIONS,
    ELEMENTWISE_METHODS,
    ELEMENTWISE_MODULES,
    MAXPOOL_FUNCTIONS,
    MAXPOOL_MODULES,
    RefuseStep,
    refusal,
    unsupported_steps,
)
from deepscope.attribution._registry import ReportDefaults, attribution_method
from deepscope.errors import UnsupportedModelError
from deepscope.registry import analysis

__all__ = ["deeplift"]


def _half_delta(tensor: torch.Tensor) -> torch.Tensor:
    """For a stacked (input; baseline) batch, Δ = input − baseline (the first half's shape)."""
    half = tensor.shape[0] // 2
    return tensor[:half] - tensor[half:]


def _pairs(tensor: torch.Tensor) -> torch.Tensor:
    """A stacked (input; baseline) batch viewed as ``(2, half, ...)``: half-sized Δ terms broadcast over it."""
    return tensor.unflatten(0, (2, tensor.shape[0] // 2))


# The multipliers below select between two formulas element by element with a 0/1 float mask and
# torch.lerp (exact for weights 0 and 1) instead of bool masks and torch.where: on the CPU builds
# measured, bool comparisons, where and any() over an activation map cost 4-20x a float multiply.
# The Δ terms are computed once per (input, baseline) pair and broadcast over both halves.


def _small_mask(delta: torch.Tensor, eps: float) -> torch.Tensor:
    """1.0 where |delta| < eps, else 0.0 (NaN stays NaN), in delta's dtype."""
    return torch.relu(torch.sign(eps - delta.abs()))


def _one_where(mask: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``values`` with 1 where ``mask`` is 1 (exactly ``values`` elsewhere: the mask term is 0 there)."""
    return values + mask * (1.0 - values)


def _apply(function: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor) -> torch.Tensor:
    """``function(z)``, on a copy when the function works in place (``nn.ReLU(inplace=True)``)."""
    return function(z.clone() if getattr(function, "inplace", False) else z)


class _Rescale(torch.autograd.Function):
    """y = f(z) forward; backward multiplier Δy/Δz (rescale rule), f'(z) where |Δz| < eps."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, function: Callable[[torch.Tensor], torch.Tensor], eps: float) -> torch.Tensor:
        output = _apply(function, z)
        ctx.save_for_backward(z, output)
        ctx.function, ctx.eps = function, eps
        return output

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        z, output = ctx.saved_tensors
        delta_in, delta_out = _half_delta(z), _half_delta(output)
        small = _small_mask(delta_in, ctx.eps)
        paired = _pairs(grad_output)
        if not bool(small.max() > 0):
            return (paired * delta_out / delta_in).flatten(0, 1), None, None
        rescaled = paired * delta_out / _one_where(small, delta_in)
        with torch.enable_grad():  # the plain derivative, only where input and baseline coincide
            leaf = z.detach().requires_grad_(True)
            (local,) = torch.autograd.grad(ctx.function(leaf.clone()), leaf, grad_output)
        return torch.lerp(rescaled, _pairs(local), small).flatten(0, 1), None, None


class _MaxPoolRule(torch.autograd.Function):
    """Max pooling with DeepLIFT multipliers (the rule of Captum's DeepLift, complete by construction)."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, function: Callable[[torch.Tensor], torch.Tensor], eps: float) -> torch.Tensor:
        output = function(z)
        ctx.save_for_backward(z, output)
        ctx.function, ctx.eps = function, eps
        return output

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        z, output = ctx.saved_tensors
        half = output.shape[0] // 2
        upper = torch.maximum(output[:half], output[half:])
        delta_out = torch.cat([upper - output[half:], output[:half] - upper])
        with torch.enable_grad():
            leaf = z.detach().requires_grad_(True)
            pooled = ctx.function(leaf)
            (local,) = torch.autograd.grad(pooled, leaf, grad_output, retain_graph=True)
            (routed,) = torch.autograd.grad(pooled, leaf, grad_output * delta_out)
        routed = routed[:half] + routed[half:]  # the same multiplier for the input and its baseline
        delta_in = _half_delta(z)
        small = _small_mask(delta_in, ctx.eps)
        if not bool(small.max() > 0):
            multiplier = routed / delta_in
            return torch.cat([multiplier, multiplier]), None, None
        multiplier = routed / _one_where(small, delta_in)
        return torch.lerp(multiplier, _pairs(local), small).flatten(0, 1), None, None


def _check_graph(graph_module: fx.GraphModule) -> dict[fx.Node, str]:
    """Refuse a step the output depends on whose multipliers would be wrong (see ``_deeplift_graph``).

    A single-tensor output depends on every live step: refuse now. For a tuple or dict output the
    steps come back, to be wrapped so that they refuse only when the selected output uses them
    (a step with a non-float value, such as an index computed from the input, refuses when run).
    """
    problems = unsupported_steps(graph_module)
    output = next(node for node in graph_module.graph.nodes if node.op == "output")
    if problems and isinstance(output.args[0], fx.Node):
        node, what = next(iter(problems.items()))
        raise UnsupportedModelError(refusal(node.name, what))
    return problems


class _DeepLiftInterpreter(fx.Interpreter):
    """Runs the traced graph, swapping non-linear steps for their DeepLIFT autograd functions."""

    def __init__(self, graph_module: fx.GraphModule, eps: float, refused: dict[fx.Node, str]) -> None:
        super().__init__(graph_module)
        self.eps, self.refused = eps, refused

    def run_node(self, n: fx.Node) -> Any:
        value = super().run_node(n)
        if n in self.refused:
            if not isinstance(value, torch.Tensor) or not value.is_floating_point():
                raise UnsupportedModelError(refusal(n.name, self.refused[n]))
            return RefuseStep.apply(value, refusal(n.name, self.refused[n]))
        return value

    def call_module(self, target, args, kwargs):
        module = self.fetch_attr(target)
        if isinstance(module, ELEMENTWISE_MODULES):
            return _Rescale.apply(args[0], module, self.eps)
        if isinstance(module, MAXPOOL_MODULES):
            return _MaxPoolRule.apply(args[0], module, self.eps)
        return super().call_module(target, args, kwargs)

    def call_function(self, target, args, kwargs):
        if target in ELEMENTWISE_FUNCTIONS:
            options = {k: v for k, v in kwargs.items() if k != "inplace"}
            return _Rescale.apply(args[0], lambda z: target(z, *args[1:], **options), self.eps)
        if target in MAXPOOL_FUNCTIONS:
            return _MaxPoolRule.apply(args[0], lambda z: target(z, *args[1:], **kwargs), self.eps)
        return super().call_function(target, args, kwargs)

    def call_method(self, target, args, kwargs):
        if target in ELEMENTWISE_METHODS:
            return _Rescale.apply(args[0], lambda z: getattr(z, target)(*args[1:], **kwargs), self.eps)
        return super().call_method(target, args, kwargs)


@attribution_method(
    aliases=("dl",),
    claimed_axioms={"completeness", "sensitivity", "dummy", "linearity"},
    report=ReportDefaults(order=2, axiom_budget="quick", axiom_order=1),
)
@analysis(takes="model_inputs", family="attribution", fixture="cnn")
def deeplift(
    model: nn.Module,
    inputs: torch.Tensor,
    target: Any = None,
    *,
    baseline: Any = None,
    eps: float = 1e-10,
    output_fn: OutputFn | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> Attribution:
    """DeepLIFT with the rescale rule, φ = (x − x') ⊙ m, m the chain of multipliers Δy/Δz (Shrikumar et al., 2017).

    The model is traced with ``torch.fx`` and run on the stacked batch (x; x'); each element-wise
    activation (module *or* function, reused or not) backpropagates Δy/Δz instead of f'(z), max
    pooling uses Captum's DeepLift rule, affine steps pass multipliers like gradients. No module
    hooks are used. Summation-to-delta (Σφ = F(x) − F(x')) holds by construction and is reported.
    A step the rule cannot handle (a product of two input-dependent tensors, a division by one,
    softmax, attention, LayerNorm, batch statistics, data-dependent control flow) raises
    UnsupportedModelError naming the step instead of giving a wrong answer, but only when the
    selected output depends on it: dead branches, and outputs that ``output_fn`` does not select,
    may use anything.

    Args:
        model, inputs, target, output_fn, max_batch: as for every method.
        baseline: reference x' (None = zeros), a number or a tensor shaped like the inputs.
        eps: below this |Δz| the plain derivative is used (Captum's default 1e-10).

    Returns:
        An :class:`Attribution`; ``diagnostics["completeness_error"]`` (relative) per example.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
        >>> a = deeplift(net, torch.randn(2, 3), target=0)
        >>> bool(a.diagnostics["completeness_error"].max() < 1e-4)
        True
    """
    owner = "deeplift"
    eps = check_float(eps, "eps", owner, minimum=0.0)
    prepared = prepare(model, inputs, target, owner=owner, output_fn=output_fn, max_batch=max_batch)
    x, targets = prepared.inputs, prepared.targets
    reference = prepare_baseline(baseline, x, owner)
    try:
        graph_module = fx.symbolic_trace(model)
    except Exception as error:  # tracing failures come in many types; all mean "not traceable"
        raise UnsupportedModelError(
            f"deeplift needs a model torch.fx can trace (no data-dependent control flow): {error}"
        ) from error
    interpreter = _DeepLiftInterpreter(graph_module, eps, _check_graph(graph_module))

    n, n_targets = x.shape[0], targets.shape[0]
    values = torch.empty((n_targets, *x.shape), dtype=x.dtype, device=x.device)
    at_input = torch.empty(n_targets, n, dtype=x.dtype, device=x.device)
    at_baseline = torch.empty_like(at_input)
    per_chunk = max(1, prepared.max_batch // 2)
    for start in range(0, n, per_chunk):
        stop = min(start + per_chunk, n)
        stacked = torch.cat([x[start:stop], reference[start:stop]]).requires_grad_(True)
        with torch.enable_grad():
            outputs = interpreter.run(stacked)
            if output_fn is not None:
                outputs = output_fn(outputs)
            if not isinstance(outputs, torch.Tensor):
                raise UnsupportedModelError("deeplift: the model returned no tensor; pass output_fn.")
            if outputs.dim() == 1:
                outputs = outputs.unsqueeze(1)
            for t in range(n_targets):
                chosen = targets[t, start:stop].repeat(2).unsqueeze(1)
                selected = outputs.gather(1, chosen).squeeze(1)
                (grad,) = torch.autograd.grad(selected.sum(), stacked, retain_graph=t < n_targets - 1)
                half = stop - start
                values[t, start:stop] = (x[start:stop] - reference[start:stop]) * grad[:half]
                at_input[t, start:stop] = selected[:half].detach()
                at_baseline[t, start:stop] = selected[half:].detach()
    error = relative_completeness_error(values.flatten(2).sum(2), at_input, at_baseline)
    return finish(
        model,
        values=values,
        targets=targets,
        multi=prepared.multi,
        method=owner,
        diagnostics={"completeness_error": error, "delta": at_input - at_baseline},
        evaluations=prepared.evaluations + 2 * n,
        options={"eps": eps, "max_batch": prepared.max_batch},
    )
