"""Lipschitz constant of a network as an interval: layer-wise upper bounds and a data-driven lower bound."""

from __future__ import annotations

import copy
import dataclasses
import math
import operator
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from deepscope._forward import first_forward
from deepscope._outputs import OutputFn, ancestors, check_output_fn, picked_node, select_output
from deepscope._validation import check_int, check_shape
from deepscope.errors import UnsupportedModelError, invalid_parameter
from deepscope.expressivity._tracing import traced
from deepscope.expressivity.activations import activation_lipschitz, function_lipschitz
from deepscope.guard import current_guard_report
from deepscope.registry import analysis
from deepscope.results import Result

__all__ = ["LipschitzBounds", "lipschitz", "operator_norm"]

_NAME = "lipschitz"
_LINEAR_MODULES = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.ZeroPad2d,
)
_SHAPE_ONLY = (nn.Flatten, nn.Unflatten, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d)


def operator_norm(
    linear_map: Callable[[torch.Tensor], torch.Tensor],
    input_shape: tuple[int, ...],
    *,
    iterations: int = 500,
    tolerance: float = 1e-12,
    seed: int = 0,
) -> tuple[float, int]:
    """Largest singular value of a linear (or affine: the offset is removed) map, by power iteration on A^T A.

    ``A^T`` is applied by autograd, so the map can be any composition of layers (a convolution is
    handled as the operator it is, with its padding and stride, not as its reshaped kernel).
    Returns ``(norm, evaluations)``: each iteration costs one forward and one backward pass.
    The estimate ``sqrt(|A^T A v|)`` approaches the norm from below; iterations stop when it moves
    by less than ``tolerance`` (relative), so it is accurate to about that precision.
    """
    generator = torch.Generator().manual_seed(seed)
    vector = torch.randn((1, *input_shape), generator=generator, dtype=torch.float64)
    vector /= vector.norm()
    zero = torch.zeros_like(vector)
    with torch.no_grad():
        offset = linear_map(zero)
    estimate, previous = 0.0, -1.0
    for iteration in range(1, iterations + 1):
        point = vector.clone().requires_grad_(True)
        with torch.enable_grad():
            image = linear_map(point) - offset
            (back,) = torch.autograd.grad(image, point, grad_outputs=image.detach())
        norm = float(back.norm())
        if norm == 0.0:
            return 0.0, iteration
        estimate = math.sqrt(norm)
        vector = back.detach() / norm
        if abs(estimate - previous) <= tolerance * estimate:
            return estimate, iteration
        previous = estimate
    return estimate, iterations


@dataclasses.dataclass(frozen=True)
class LipschitzBounds(Result):
    """The interval ``lower <= Lip_2(f) <= upper``.

    Attributes:
        lower: largest spectral norm of the input-output Jacobian found (data, then a local search).
        lower_at_data: the same over the given inputs only, before the search.
        upper: product over nonlinear layers of the operator norms of the merged affine blocks
            between them (tighter), with residual additions summed.
        upper_product: product of every layer's operator norm (the classic, loose bound).
        layers: per layer: name, kind, operator norm (or Lipschitz constant of the activation).
        evaluations: forward+backward passes spent (power iterations and Jacobians).
    """

    lower: float | None
    lower_at_data: float | None
    upper: float
    upper_product: float
    layers: list[dict[str, Any]]
    evaluations: int
    note: str = ""

    def rows(self) -> list[dict[str, Any]]:
        return [dict(layer) for layer in self.layers]

    def summary(self) -> str:
        lower = "?" if self.lower is None else f"{self.lower:.4g}"
        return f"{lower} <= Lipschitz constant <= {self.upper:.4g} (layer-norm product {self.upper_product:.4g})"

    def plot(self, ax=None):
        from deepscope._figures import new_figure

        figure, ax = new_figure(6.0, 3.2) if ax is None else (ax.figure, ax)
        names = [f"{layer['layer']}\n{layer['kind']}" for layer in self.layers]
        ax.bar(range(len(names)), [layer["norm"] for layer in self.layers], color="C0")
        ax.set_xticks(range(len(names)), names, fontsize=6)
        ax.set_yscale("log")
        ax.set_ylabel("operator norm / Lipschitz constant")
        ax.set_title(self.summary(), fontsize=8)
        return figure


@analysis(takes="model_inputs", family="expressivity", fixture="cnn", example_kwargs={"search_steps": 3})
def lipschitz(
    model: nn.Module,
    inputs: torch.Tensor | None = None,
    *,
    input_shape: tuple[int, ...] | None = None,
    search_points: int = 4,
    search_steps: int = 30,
    max_points: int = 256,
    seed: int = 0,
    output_fn: OutputFn | None = None,
) -> LipschitzBounds:
    """Bound the l2 Lipschitz constant of ``model`` from above and below.

    Upper: ``Lip(f) <= prod_l ||A_l||_2 * prod Lip(phi)`` (Szegedy et al., 2014; Virmaux & Scaman,
    2018), residual sums adding the bounds of their branches. Operator norms come from power
    iteration on the layer's own operator (exact convolutions, eval BatchNorm as a diagonal); the
    tighter ``upper`` merges consecutive affine layers (e.g. Conv then BatchNorm then pooling) into
    one operator before taking its norm. Max-pooling is ``sqrt(windows per input)``-Lipschitz.
    Lower: ``Lip(f) >= sup_x ||J_f(x)||_2``, over the inputs and then refined by a local search
    around the best points (``search_points`` x ``search_steps`` steps: gradient ascent on the
    Jacobian's stretch where it is smooth, random steps where it is piecewise constant).

    Args:
        model: the network (traced with torch.fx). inputs: ``(batch, *features)`` data (optional).
        input_shape: per-example input shape when no inputs are given.
        search_points, search_steps: size of the local search for the lower bound.
        max_points: at most this many inputs are used. seed: random seed.
        output_fn: for a model returning a tuple or dict, picks the output to bound; it must return
            one of the returned tensors unchanged (``lambda out: out[0]``, ``out["logits"]``), since
            the upper bound follows the graph to that tensor.

    Example:
        >>> net = nn.Linear(3, 2)
        >>> bounds = lipschitz(net, torch.randn(5, 3))
        >>> abs(bounds.upper - bounds.lower) < 1e-6
        True
    """
    check_int(search_points, "search_points", _NAME, minimum=0)
    check_int(search_steps, "search_steps", _NAME, minimum=0)
    check_int(max_points, "max_points", _NAME, minimum=1)
    check_output_fn(output_fn, _NAME)
    if input_shape is not None and inputs is not None:
        raise invalid_parameter("input_shape", _NAME, "None when inputs are given (theirs is used)", input_shape)
    if input_shape is not None:
        input_shape = check_shape(input_shape, "input_shape", _NAME)
    if inputs is None and input_shape is None:
        first = next((m for m in model.modules() if isinstance(m, nn.Linear)), None)
        if first is None:
            raise invalid_parameter("inputs", _NAME, "given (or input_shape) for a model without a first Linear", None)
        input_shape = (first.in_features,)
    device = next(iter(model.parameters()), torch.zeros(0)).device
    network = copy.deepcopy(model).to(device=device, dtype=torch.float64).eval()
    for module in network.modules():
        module._forward_hooks.clear()
        module._forward_pre_hooks.clear()
    if inputs is not None:
        inputs = torch.as_tensor(inputs).detach().to(device, torch.float64)[:max_points]
        input_shape = tuple(inputs.shape[1:])
    example = torch.zeros((1, *input_shape), dtype=torch.float64, device=device)
    with torch.no_grad():
        first_forward(network, example)  # a wrong input width: the shared DataError, not a ShapeProp error
    graph = traced(network, _NAME)
    ShapeProp(graph).propagate(example)
    upper, upper_product, layers, evaluations = _upper_bounds(
        graph, seed, picked_node(graph, output_fn, _NAME, "to bound")
    )
    lower = lower_at_data = None
    if inputs is not None and len(inputs):
        measured = _Selected(network, output_fn)
        lower_at_data, lower, spent = _lower_bound(measured, inputs, search_points, search_steps, seed)
        evaluations += spent
    report = current_guard_report(model)
    return LipschitzBounds(
        lower=lower,
        lower_at_data=lower_at_data,
        upper=upper,
        upper_product=upper_product,
        layers=layers,
        evaluations=evaluations,
        note=report.note if report is not None else "",
    )


@dataclasses.dataclass
class _Bound:
    """Lipschitz bound of a node's value = ``pending`` affine ops applied after something ``lipschitz``-Lipschitz."""

    lipschitz: float
    product: float
    pending: list[Callable] = dataclasses.field(default_factory=list)
    start_shape: tuple[int, ...] | None = None


class _Selected(nn.Module):
    """The network followed by ``output_fn`` (the tensor whose Jacobian the lower bound measures)."""

    def __init__(self, network: nn.Module, output_fn: OutputFn | None) -> None:
        super().__init__()
        self.network, self.output_fn = network, output_fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return select_output(self.network(x), self.output_fn, _NAME)


def _upper_bounds(graph: fx.GraphModule, seed: int, selected: fx.Node):
    """Bounds node by node up to ``selected``; steps it does not depend on are skipped."""
    modules = dict(graph.named_modules())
    needed = ancestors(selected)
    bounds: dict[fx.Node, _Bound] = {}
    layers: list[dict[str, Any]] = []
    spent = [0]

    def flush(bound: _Bound) -> _Bound:
        if not bound.pending:
            return bound
        chain = list(bound.pending)

        def composed(x):
            for op in chain:
                x = op(x)
            return x

        norm, used = operator_norm(composed, bound.start_shape, seed=seed)
        spent[0] += used
        return _Bound(bound.lipschitz * norm, bound.product)

    def shape_of(node: fx.Node) -> tuple[int, ...]:
        return tuple(node.meta["tensor_meta"].shape[1:])

    for node in graph.graph.nodes:
        if node.op == "output":
            if selected not in bounds:
                raise UnsupportedModelError("lipschitz: the bounded output does not depend on the input.")
            final = flush(bounds[selected])
            return final.lipschitz, final.product, layers, spent[0]
        if node not in needed:
            continue
        if node.op == "placeholder":
            bounds[node] = _Bound(1.0, 1.0)
            continue
        inputs = [a for a in node.all_input_nodes if a in bounds]
        if node.op == "call_module" and isinstance(modules[node.target], _LINEAR_MODULES + _SHAPE_ONLY):
            module = modules[node.target]
            source = bounds[node.args[0]]
            if isinstance(module, _SHAPE_ONLY):
                norm = 1.0
            elif isinstance(module, nn.Linear):
                norm = float(torch.linalg.matrix_norm(module.weight.detach(), ord=2))
            else:
                norm, used = operator_norm(module, shape_of(node.args[0]), seed=seed)
                spent[0] += used
            layers.append({"layer": str(node.target), "kind": type(module).__name__, "norm": norm})
            start = source.start_shape if source.pending else shape_of(node.args[0])
            bounds[node] = _Bound(source.lipschitz, source.product * norm, [*source.pending, module], start)
            continue
        constant = _activation_constant(node, modules)
        if constant is not None:
            source = flush(bounds[node.args[0]])
            kind = type(modules[node.target]).__name__ if node.op == "call_module" else str(node.target)
            layers.append({"layer": str(node.target), "kind": kind, "norm": constant})
            bounds[node] = _Bound(source.lipschitz * constant, source.product * constant)
            continue
        if node.op in ("call_method", "call_function") and _is_reshape(node):
            source = bounds[node.args[0]]
            shape = shape_of(node)
            start = source.start_shape if source.pending else shape_of(node.args[0])
            reshape = _reshaper(shape)
            bounds[node] = _Bound(source.lipschitz, source.product, [*source.pending, reshape], start)
            continue
        if node.op == "call_function" and node.target in (operator.add, torch.add) and len(inputs) == 2:
            left, right = flush(bounds[inputs[0]]), flush(bounds[inputs[1]])
            bounds[node] = _Bound(left.lipschitz + right.lipschitz, left.product + right.product)
            continue
        if (
            node.op == "call_function"
            and node.target in (operator.add, operator.sub, operator.mul)
            and len(inputs) == 1
        ):
            scalar = next((a for a in node.args if isinstance(a, int | float)), None)
            if scalar is not None:
                factor = abs(scalar) if node.target is operator.mul else 1.0
                source = flush(bounds[inputs[0]])
                bounds[node] = _Bound(source.lipschitz * factor, source.product * factor)
                continue
        if not inputs:
            continue  # constants and sizes
        target = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", node.target)
        raise UnsupportedModelError(
            f"lipschitz cannot bound '{target}' ({node.op}); supported: Linear, Conv, "
            "BatchNorm, pooling, common activations, reshapes and residual additions."
        )
    raise UnsupportedModelError("The traced graph has no output node.")


def _activation_constant(node: fx.Node, modules: dict) -> float | None:
    if node.op == "call_module":
        module = modules[node.target]
        constant = activation_lipschitz(module)  # with the module's own options (GELU's approximation, ELU's alpha)
        if constant is not None:
            return constant
        if isinstance(module, nn.MaxPool1d | nn.MaxPool2d):
            kernel = np.atleast_1d(module.kernel_size)
            stride = np.atleast_1d(module.stride or module.kernel_size)
            dilation = np.atleast_1d(module.dilation)
            per_input = np.prod(kernel) if (dilation > 1).any() else np.prod(np.ceil(kernel / stride))
            return math.sqrt(float(per_input))  # each input feeds at most per_input windows
        return None
    if node.op in ("call_function", "call_method"):
        if len(node.all_input_nodes) != 1:
            return None  # an option computed in the graph, or an activation of several tensors
        return function_lipschitz(node.target, tuple(node.args[1:]), dict(node.kwargs))
    return None


def _is_reshape(node: fx.Node) -> bool:
    if node.op == "call_method":
        return node.target in ("view", "reshape", "flatten", "contiguous")
    return node.target in (torch.flatten, torch.reshape)


def _reshaper(shape: tuple[int, ...]) -> Callable:
    return lambda x: x.reshape(x.shape[0], *shape)


def _jacobian_norms(network: nn.Module, points: torch.Tensor) -> torch.Tensor:
    """Spectral norm of the input-output Jacobian at each point: ``(n,)``."""

    def single(x):
        return network(x.unsqueeze(0)).reshape(-1)

    jacobians = torch.func.vmap(torch.func.jacrev(single))(points)
    return torch.linalg.matrix_norm(jacobians.reshape(len(points), jacobians.shape[1], -1), ord=2)


def _ascent_direction(network: nn.Module, point: torch.Tensor) -> torch.Tensor:
    """Gradient of ``|J(x) v|^2`` at ``x`` with ``v`` the top right singular vector of ``J(x)`` (zero for ReLU nets)."""

    def single(x):
        return network(x.unsqueeze(0)).reshape(-1)

    x = point[0]
    with warnings.catch_warnings():  # torch.func on some layers emits torch-internal deprecation notices
        warnings.simplefilter("ignore", DeprecationWarning)
        jacobian = torch.func.jacrev(single)(x).reshape(-1, x.numel()).detach()
        direction = torch.linalg.svd(jacobian, full_matrices=False).Vh[0].reshape(x.shape)

        def stretch(y):
            return torch.func.jvp(single, (y,), (direction,))[1].square().sum()

        return torch.func.grad(stretch)(x).detach().unsqueeze(0)


def _lower_bound(network: nn.Module, inputs: torch.Tensor, points: int, steps: int, seed: int):
    """Largest Jacobian norm over the inputs, then a local search from the best ``points`` of them.

    Each step moves along the gradient of the Jacobian's stretch where it is non-zero (smooth
    activations) and in a random direction otherwise (piecewise-linear nets, whose Jacobian is
    piecewise constant); a step is kept only if it increases the norm, and the step size adapts.
    """
    norms = torch.cat([_jacobian_norms(network, chunk).detach() for chunk in inputs.split(64)])
    at_data = float(norms.max())
    best = at_data
    evaluations = len(inputs)
    generator = torch.Generator().manual_seed(seed)
    scale = float(inputs.flatten(1).norm(dim=1).median()) or 1.0
    for start in norms.argsort(descending=True)[:points].tolist():
        current, value, radius = inputs[start : start + 1], float(norms[start]), 0.1 * scale
        for _ in range(steps):
            direction = _ascent_direction(network, current)
            evaluations += 1
            if not bool(torch.isfinite(direction).all()) or float(direction.norm()) <= 1e-12:
                direction = torch.randn(current.shape, generator=generator, dtype=current.dtype).to(current.device)
            candidate = current + radius * direction / direction.norm()
            candidate_value = float(_jacobian_norms(network, candidate)[0].detach())
            evaluations += 1
            if candidate_value > value:
                current, value, radius = candidate, candidate_value, radius * 1.5
            else:
                radius *= 0.7
        best = max(best, value)
    return at_data, best, evaluations
