"""Layer health: dead and saturated units, activation statistics, Jacobian spectrum, per-layer gradient norms."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from deepscope._forward import first_forward
from deepscope._outputs import OutputFn, check_output_fn, select_output
from deepscope._validation import check_float, check_int
from deepscope.errors import DataError, InvalidParameterError, invalid_parameter
from deepscope.expressivity._tracing import traced
from deepscope.guard import current_guard_report
from deepscope.registry import analysis
from deepscope.results import Result

__all__ = ["LayerHealth", "layer_health"]

_NAME = "layer_health"
_ACTIVATION_MODULES = (
    nn.ReLU,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.Softplus,
    nn.ReLU6,
    nn.Hardtanh,
)
_ACTIVATION_FUNCTIONS = {
    F.relu: "relu",
    torch.relu: "relu",
    torch.tanh: "tanh",
    torch.sigmoid: "sigmoid",
    F.gelu: "gelu",
    F.silu: "silu",
    F.leaky_relu: "leaky_relu",
    F.elu: "elu",
}


@dataclasses.dataclass(frozen=True)
class LayerHealth(Result):
    """Per-layer diagnostics of a network on a batch of inputs.

    Attributes:
        layers: per activation layer: ``layer``, ``kind``, ``units``, ``dead_fraction`` (derivative
            zero on every input), ``saturated_fraction`` (derivative below ``saturation`` x its
            largest value on >= 95 % of inputs, dead units excluded), ``zero_fraction`` (outputs
            exactly 0), ``mean``, ``std`` of outputs, and ``gradient_norm`` = RMS over examples of
            ``|dL/d(output)|``.
        parameters: per parameter tensor: ``name``, ``weight_norm``, ``gradient_norm`` (of the mean
            loss) and their ratio.
        jacobian_singular_values: ``(points, min(outputs, inputs))`` singular values of the
            input-output Jacobian at the first ``jacobian_points`` inputs (dynamical isometry:
            all close to 1; Pennington et al. 2017).
        loss_targets: "given" or "predicted" (the model's own argmax when no targets were passed).
        examples: number of inputs used.
    """

    layers: list[dict[str, Any]]
    parameters: list[dict[str, Any]]
    jacobian_singular_values: np.ndarray
    loss_targets: str
    examples: int
    note: str = ""

    def rows(self) -> list[dict[str, Any]]:
        return [dict(layer) for layer in self.layers]

    def summary(self) -> str:
        worst = max(self.layers, key=lambda r: r["dead_fraction"] + r["saturated_fraction"], default=None)
        if worst is None:
            return "No activation layers found."
        values = self.jacobian_singular_values
        spread = f"Jacobian singular values in [{values.min():.3g}, {values.max():.3g}]" if values.size else ""
        return (
            f"Least healthy layer {worst['layer']} ({worst['kind']}): {worst['dead_fraction']:.0%} dead, "
            f"{worst['saturated_fraction']:.0%} saturated units. {spread}"
        )

    def plot(self, ax=None):
        from deepscope._figures import new_figure

        figure, axes = new_figure(8.0, 3.2, ncols=2)
        names = [str(layer["layer"]) for layer in self.layers]
        positions = np.arange(len(names))
        axes[0].bar(positions - 0.2, [r["dead_fraction"] for r in self.layers], 0.4, label="dead")
        axes[0].bar(positions + 0.2, [r["saturated_fraction"] for r in self.layers], 0.4, label="saturated")
        axes[0].set_xticks(positions, names, fontsize=7)
        axes[0].set_ylim(0, 1)
        axes[0].set_ylabel("fraction of units")
        axes[0].legend(fontsize=7)
        axes[1].semilogy(positions, [max(r["gradient_norm"], 1e-30) for r in self.layers], "o-")
        axes[1].set_xticks(positions, names, fontsize=7)
        axes[1].set_ylabel("RMS |dL/d activation|")
        axes[1].set_title("gradient through depth", fontsize=9)
        return figure


@analysis(takes="model_inputs", family="expressivity", fixture="mlp", example_kwargs={"jacobian_points": 2})
def layer_health(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor | None = None,
    *,
    saturation: float = 0.05,
    jacobian_points: int = 8,
    max_samples: int = 512,
    output_fn: OutputFn | None = None,
) -> LayerHealth:
    """Dead and saturated units, activation statistics, input-output Jacobian spectrum and gradient norms.

    A ReLU unit whose derivative is zero on every input never passes gradient (dead); a tanh or
    sigmoid unit whose derivative is tiny on almost every input is saturated (Glorot & Bengio, 2010).
    Gradient norms per layer show vanishing or exploding gradients; the singular values of the
    input-output Jacobian measure dynamical isometry (Pennington et al., 2017).

    Args:
        model: the network (traced with torch.fx to find activations, functional ones included).
        inputs: ``(batch, *features)``. targets: ``(batch,)`` class labels (default: the model's own
            predictions); the loss is cross-entropy.
        saturation: a unit is saturated where ``|phi'| < saturation * max |phi'|`` (of that unit).
        jacobian_points: inputs at which the Jacobian's singular values are computed.
        max_samples: at most this many inputs.
        output_fn: for a model returning a tuple or dict, picks the class scores (the loss and the
            Jacobian are of that output).

    Example:
        >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> len(layer_health(net, torch.randn(16, 3)).layers)
        1
    """
    check_float(saturation, "saturation", _NAME, minimum=0.0, maximum=1.0)
    check_int(jacobian_points, "jacobian_points", _NAME, minimum=0)
    check_int(max_samples, "max_samples", _NAME, minimum=1)
    check_output_fn(output_fn, _NAME)
    inputs = torch.as_tensor(inputs).detach()
    given_count = len(inputs) if inputs.ndim else 0
    inputs = inputs[:max_samples]
    if inputs.ndim < 2 or len(inputs) == 0:
        raise DataError(f"layer_health needs inputs shaped (batch, *features); got shape {tuple(inputs.shape)}.")
    network = copy.deepcopy(model).eval()
    for module in network.modules():
        module._forward_hooks.clear()
        module._forward_pre_hooks.clear()
        if getattr(module, "inplace", False) is True:  # ReLU(inplace=True) would overwrite the recorded input
            module.inplace = False
    reference = next(iter(network.parameters()), None)
    if reference is not None:
        inputs = inputs.to(reference.device, reference.dtype)
    with torch.no_grad():
        first_forward(network, inputs[:1])  # a wrong input width: the shared DataError
    graph = _out_of_place(traced(network, _NAME))
    params = {name: p.detach().clone().requires_grad_(True) for name, p in graph.named_parameters()}
    for name, value in params.items():
        _assign(graph, name, value)
    records = _Recorder(graph).record(inputs)
    logits = select_output(records.output, output_fn, _NAME).reshape(len(inputs), -1)
    if targets is None:
        targets, loss_targets = logits.argmax(dim=1).detach(), "predicted"
    else:
        targets, loss_targets = _given_targets(targets, given_count, logits.shape[1])[: len(inputs)], "given"
        targets = targets.to(logits.device)
    loss = F.cross_entropy(logits, targets, reduction="sum")
    outputs = [output for _, _, _, output in records.layers]
    gradients = torch.autograd.grad(loss, outputs + list(params.values()), allow_unused=True)
    layer_rows = [
        _layer_row(name, kind, function, pre, output, gradient, saturation)
        for (name, kind, function, pre, output), gradient in zip(records.full, gradients[: len(outputs)])
    ]
    parameter_rows = []
    for (name, value), gradient in zip(params.items(), gradients[len(outputs) :]):
        gradient_norm = 0.0 if gradient is None else float(gradient.norm()) / len(inputs)
        weight_norm = float(value.detach().norm())
        parameter_rows.append(
            {
                "name": name,
                "weight_norm": weight_norm,
                "gradient_norm": gradient_norm,
                "ratio": gradient_norm / weight_norm if weight_norm else float("nan"),
            }
        )
    singular = (
        _jacobian_singular_values(network, inputs[:jacobian_points], output_fn) if jacobian_points else np.zeros((0, 0))
    )
    report = current_guard_report(model)
    return LayerHealth(
        layers=layer_rows,
        parameters=parameter_rows,
        jacobian_singular_values=singular,
        loss_targets=loss_targets,
        examples=len(inputs),
        note=report.note if report is not None else "",
    )


def _given_targets(targets: Any, count: int, classes: int) -> torch.Tensor:
    """``targets`` as a long tensor: 1-D, integer, one per input, each a class of the model's output."""
    expected = f"{count} integer class labels in [0, {classes - 1}], one per input"
    try:
        tensor = torch.as_tensor(targets)
    except (TypeError, ValueError, RuntimeError) as error:
        raise invalid_parameter("targets", _NAME, expected, targets) from error
    wrong_type = tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool
    if wrong_type or tensor.ndim != 1 or len(tensor) != count:
        raise invalid_parameter("targets", _NAME, expected, targets)
    if bool((tensor < 0).any()) or bool((tensor >= classes).any()):
        low, high = int(tensor.min()), int(tensor.max())
        raise InvalidParameterError(
            f"The 'targets' parameter of {_NAME} must be {expected}. Got labels in [{low}, {high}] instead."
        )
    return tensor.long()


def _out_of_place(graph: fx.GraphModule) -> fx.GraphModule:
    """The traced copy with in-place activations (``F.relu(x, inplace=True)``, ``x.relu_()``) made out of place.

    The recorder keeps each activation's input next to its output; an in-place call would overwrite
    that input (and autograd refuses in-place writes on views of the leaf parameters).
    """
    changed = False
    for node in graph.graph.nodes:
        if node.op == "call_function" and node.kwargs.get("inplace") is True:
            node.kwargs = {**node.kwargs, "inplace": False}
            changed = True
        elif node.op == "call_method" and node.target in ("relu_", "tanh_", "sigmoid_"):
            node.target = node.target[:-1]
            changed = True
    if changed:
        graph.recompile()
    return graph


def _assign(graph: fx.GraphModule, name: str, value: torch.Tensor) -> None:
    owner_name, _, attribute = name.rpartition(".")
    owner = graph.get_submodule(owner_name) if owner_name else graph
    delattr(owner, attribute)
    setattr(owner, attribute, value)


class _Recorder(fx.Interpreter):
    """Runs the traced graph and keeps each activation's input (pre-activation) and output."""

    def record(self, inputs: torch.Tensor) -> _Recorder:
        self.full: list[tuple[str, str, Any, torch.Tensor, torch.Tensor]] = []
        self.modules_by_name = dict(self.module.named_modules())
        with torch.enable_grad():
            self.output = self.run(inputs)
        self.layers = [(name, kind, function, output) for name, kind, function, _, output in self.full]
        return self

    def run_node(self, node: fx.Node) -> Any:
        result = super().run_node(node)
        found = None
        if node.op == "call_module" and isinstance(self.modules_by_name[node.target], _ACTIVATION_MODULES):
            module = self.modules_by_name[node.target]
            found = (str(node.target), type(module).__name__, module)
        elif node.op == "call_function" and node.target in _ACTIVATION_FUNCTIONS:
            found = (node.name, _ACTIVATION_FUNCTIONS[node.target], node.target)
        elif node.op == "call_method" and node.target in ("relu", "tanh", "sigmoid"):
            found = (node.name, node.target, getattr(torch, node.target))
        if found is not None and isinstance(result, torch.Tensor):
            pre = self.env[node.args[0]] if isinstance(node.args[0], fx.Node) else None
            if pre is not None:
                self.full.append((*found, pre, result))
        return result


def _layer_row(name, kind, function, pre, output, gradient, saturation) -> dict[str, Any]:
    count = len(pre)
    z = pre.detach().reshape(count, -1).clone().requires_grad_(True)
    with torch.enable_grad():
        (slope,) = torch.autograd.grad(function(z.reshape(pre.shape)).sum(), z)
    slope = slope.abs()
    dead = (slope <= 1e-12).all(dim=0)
    largest = slope.max(dim=0).values.clamp_min(1e-30)
    small = (slope < saturation * largest).float().mean(dim=0) >= 0.95
    alive = ~dead
    saturated = (small & alive).sum() / max(int(alive.sum()), 1) if alive.any() else torch.tensor(0.0)
    values = output.detach().reshape(count, -1)
    rms = 0.0 if gradient is None else float(gradient.reshape(count, -1).norm(dim=1).square().mean().sqrt())
    return {
        "layer": name,
        "kind": kind,
        "units": values.shape[1],
        "dead_fraction": float(dead.float().mean()),
        "saturated_fraction": float(saturated),
        "zero_fraction": float((values == 0).float().mean()),
        "mean": float(values.mean()),
        "std": float(values.std()) if values.numel() > 1 else 0.0,
        "gradient_norm": rms,
    }


def _jacobian_singular_values(network: nn.Module, points: torch.Tensor, output_fn: OutputFn | None) -> np.ndarray:
    def single(x):
        return select_output(network(x.unsqueeze(0)), output_fn, _NAME).reshape(-1)

    jacobians = torch.func.vmap(torch.func.jacrev(single))(points)
    jacobians = jacobians.reshape(len(points), jacobians.shape[1], -1).detach()
    return torch.linalg.svdvals(jacobians).cpu().numpy()
