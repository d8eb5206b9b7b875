"""DeepLIFT (rescale rule) without module hooks: a torch.fx graph run on (input, baseline) pairs
whose non-linear steps carry modified backward passes."""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import torch
import torch.fx as fx
from torch import nn
from torch.nn import functional as F

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
from deepscope.attribution._elementwise import ACTIVATION_FUNCTIONS, ACTIVATION_METHODS, ACTIVATION_MODULES
from deepscope.errors import UnsupportedModelError
from deepscope.registry import analysis

__all__ = ["deeplift"]

_ELEMENTWISE_MODULES = ACTIVATION_MODULES
_ELEMENTWISE_FUNCTIONS = ACTIVATION_FUNCTIONS
_ELEMENTWISE_METHODS = ACTIVATION_METHODS
_MAXPOOL_MODULES = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)
_MAXPOOL_FUNCTIONS = {F.max_pool1d, F.max_pool2d, F.max_pool3d}
# affine or purely structural steps: DeepLIFT's multipliers pass through them like gradients
_AFFINE_MODULES = (
    nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.Flatten, nn.Unflatten, nn.Identity,
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
    nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.ZeroPad1d, nn.ZeroPad2d, nn.ConstantPad1d, nn.ConstantPad2d,
)  # fmt: skip
_AFFINE_FUNCTIONS = {
    operator.add, operator.sub, operator.neg, operator.pos, operator.getitem, operator.mul, operator.truediv,
    torch.add, torch.sub, torch.mul, torch.cat, torch.stack, torch.flatten, torch.reshape, torch.permute,
    torch.transpose, torch.squeeze, torch.unsqueeze, torch.sum, torch.mean, torch.matmul, torch.chunk,
    F.linear, F.conv1d, F.conv2d, F.conv3d, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d, F.adaptive_avg_pool1d,
    F.adaptive_avg_pool2d, F.dropout, F.batch_norm, F.pad, getattr,
}  # fmt: skip
_AFFINE_METHODS = {
    "view", "reshape", "flatten", "permute", "transpose", "squeeze", "unsqueeze", "contiguous", "size", "sum",
    "mean", "add", "sub", "mul", "div", "expand", "expand_as", "repeat", "chunk", "split", "dim", "__getitem__",
    "view_as", "reshape_as", "t", "neg",
}  # fmt: skip
_BILINEAR = {operator.mul, operator.truediv, torch.mul, torch.matmul, "mul", "div"}


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


def _depends_on_input(argument: Any, dependent: set[fx.Node]) -> int:
    if isinstance(argument, fx.Node):
        return int(argument in dependent)
    if isinstance(argument, (list, tuple)):
        return sum(_depends_on_input(a, dependent) for a in argument)
    if isinstance(argument, dict):
        return sum(_depends_on_input(a, dependent) for a in argument.values())
    return 0


def _check_graph(graph_module: fx.GraphModule) -> None:
    """Refuse any step whose DeepLIFT multipliers this implementation cannot compute exactly."""
    dependent: set[fx.Node] = set()
    for node in graph_module.graph.nodes:
        if node.op == "placeholder":
            dependent.add(node)
            continue
        count = _depends_on_input(node.args, dependent) + _depends_on_input(node.kwargs, dependent)
        if count == 0 or node.op in ("output", "get_attr"):
            continue
        dependent.add(node)
        if node.op == "call_module":
            module = graph_module.get_submodule(node.target)
            supported = _ELEMENTWISE_MODULES + _MAXPOOL_MODULES + _AFFINE_MODULES
            ok = isinstance(module, supported) and not getattr(module, "return_indices", False)
            what = type(module).__name__
        elif node.op == "call_function":
            ok = node.target in _ELEMENTWISE_FUNCTIONS | _MAXPOOL_FUNCTIONS | _AFFINE_FUNCTIONS
            what = getattr(node.target, "__name__", str(node.target))
        else:
            ok = node.target in _ELEMENTWISE_METHODS | _AFFINE_METHODS
            what = f".{node.target}()"
        if ok and node.target in _BILINEAR and count > 1:
            ok, what = False, f"{what} of two input-dependent tensors"
        if not ok:
            raise UnsupportedModelError(
                f"deeplift: step '{node.name}' ({what}) is not supported by the rescale rule here; supported are "
                "affine layers, element-wise activations (modules or functions) and max pooling."
            )


class _DeepLiftInterpreter(fx.Interpreter):
    """Runs the traced graph, swapping non-linear steps for their DeepLIFT autograd functions."""

    def __init__(self, graph_module: fx.GraphModule, eps: float) -> None:
        super().__init__(graph_module)
        self.eps = eps

    def call_module(self, target, args, kwargs):
        module = self.fetch_attr(target)
        if isinstance(module, _ELEMENTWISE_MODULES):
            return _Rescale.apply(args[0], module, self.eps)
        if isinstance(module, _MAXPOOL_MODULES):
            return _MaxPoolRule.apply(args[0], module, self.eps)
        return super().call_module(target, args, kwargs)

    def call_function(self, target, args, kwargs):
        if target in _ELEMENTWISE_FUNCTIONS:
            options = {k: v for k, v in kwargs.items() if k != "inplace"}
            return _Rescale.apply(args[0], lambda z: target(z, *args[1:], **options), self.eps)
        if target in _MAXPOOL_FUNCTIONS:
            return _MaxPoolRule.apply(args[0], lambda z: target(z, *args[1:], **kwargs), self.eps)
        return super().call_function(target, args, kwargs)

    def call_method(self, target, args, kwargs):
        if target in _ELEMENTWISE_METHODS:
            return _Rescale.apply(args[0], lambda z: getattr(z, target)(*args[1:], **kwargs), self.eps)
        return super().call_method(target, args, kwargs)


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
    A step the rule cannot handle (a product of two input-dependent tensors, softmax, attention,
    LayerNorm, data-dependent control flow) raises UnsupportedModelError instead of a wrong answer.

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
    _check_graph(graph_module)
    interpreter = _DeepLiftInterpreter(graph_module, eps)

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
