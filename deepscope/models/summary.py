"""model_summary: an architecture table, parameter counts, layer types and activation functions.

One row per leaf module (and per module that owns parameters directly): its name, type, the
output shape it produces for one example of ``input_shape`` (traced with forward hooks that are
removed afterwards), its parameter count and trainable count. Shared (tied) parameters are
counted once, under the first module that owns them, so the rows add up to the model's total
``Σ_p numel(p)``. Activation functions are found two ways: activation MODULES (``nn.ReLU``,
``nn.GELU``, ...) by type, and FUNCTIONAL activations (``F.relu(x)``, ``torch.tanh(x)``,
``x.sigmoid()``) by tracing the forward pass with ``torch.fx``; when the model cannot be traced
the functional activations are reported as unknown (None).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from deepscope._finite import describe_nonfinite, nonfinite_tensors
from deepscope._forward import first_forward
from deepscope.errors import invalid_parameter
from deepscope.guard import current_guard_report
from deepscope.registry import analysis
from deepscope.results import Result

__all__ = ["model_summary", "ModelSummary", "functional_activations"]

_EXCLUDED_ACTIVATION_MODULES = (nn.MultiheadAttention,)
_MAX_BARS = 40  # the parameter chart shows at most this many layers (the largest), in model order

_FUNCTIONS = {
    F.relu: "relu",
    F.relu_: "relu",
    torch.relu: "relu",
    torch.relu_: "relu",
    F.relu6: "relu6",
    F.leaky_relu: "leaky_relu",
    F.elu: "elu",
    F.selu: "selu",
    F.celu: "celu",
    F.gelu: "gelu",
    F.silu: "silu",
    F.mish: "mish",
    F.softplus: "softplus",
    F.softsign: "softsign",
    F.hardtanh: "hardtanh",
    F.hardswish: "hardswish",
    F.hardsigmoid: "hardsigmoid",
    F.prelu: "prelu",
    F.glu: "glu",
    F.logsigmoid: "logsigmoid",
    F.tanh: "tanh",
    torch.tanh: "tanh",
    F.sigmoid: "sigmoid",
    torch.sigmoid: "sigmoid",
    F.softmax: "softmax",
    torch.softmax: "softmax",
    F.log_softmax: "log_softmax",
    torch.log_softmax: "log_softmax",
}
_METHODS = {
    "relu": "relu",
    "relu_": "relu",
    "tanh": "tanh",
    "tanh_": "tanh",
    "sigmoid": "sigmoid",
    "sigmoid_": "sigmoid",
    "softmax": "softmax",
    "log_softmax": "log_softmax",
}


@dataclasses.dataclass(frozen=True)
class ModelSummary(Result):
    """What :func:`model_summary` returns.

    Attributes:
        layers: one dict per row: ``name``, ``type``, ``output_shape`` (per example, or None
            without ``input_shape``), ``calls`` (forward calls in the trace), ``parameters``, ``trainable``.
        total_parameters, trainable_parameters: unique parameter counts (tied weights once).
        buffer_elements: elements in buffers (BatchNorm running statistics, ...).
        memory_bytes: bytes held by parameters and buffers.
        layer_types: leaf module type -> count, in order of first appearance.
        activation_modules: activation module type -> count.
        functional_activations: names of functional activations found by torch.fx, or None
            when the model could not be traced (unknown).
        trace_error: why torch.fx could not trace the model (empty when it could).
        input_shape, output_shape: one example in and out (None without ``input_shape``).
        note: the guard's note when the model was in train mode.
        nonfinite: one entry per parameter with NaN/Inf values (or buffer with NaN):
            ``{"name", "layer", "type", "bad", "total"}``; empty for a healthy model. Such a model is
            described but every analysis refuses it (:class:`~deepscope.errors.NonFiniteError`).
        nonfinite_text: one phrase naming the first such tensor and its layer ('' when none).
    """

    layers: list[dict[str, Any]]
    total_parameters: int
    trainable_parameters: int
    buffer_elements: int
    memory_bytes: int
    layer_types: dict[str, int]
    activation_modules: dict[str, int]
    functional_activations: list[str] | None
    trace_error: str
    input_shape: tuple[int, ...] | None
    output_shape: tuple[int, ...] | None
    note: str = ""
    nonfinite: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    nonfinite_text: str = ""

    def rows(self) -> list[dict[str, Any]]:
        """The architecture table, one row per layer."""
        return [dict(row) for row in self.layers]

    @property
    def activations(self) -> list[str]:
        """All activation functions used: module types and functional names ("unknown" if untraceable)."""
        found = [name for name in self.activation_modules]
        if self.functional_activations is None:
            found.append("unknown functional activations")
        else:
            found += [f"functional {name}" for name in self.functional_activations]
        return found

    def sentence(self, model_name: str = "The model") -> str:
        """Deprecated alias of :meth:`summary` (the one name for a result's headline); removed in 0.2."""
        return self.summary(model_name)

    def summary(self, model_name: str = "The model") -> str:
        """One plain sentence describing the architecture (``model_name`` starts it)."""
        weighted = sum(1 for row in self.layers if row["parameters"])
        activations = ", ".join(self.activations) or "no activation functions"
        sentence = (
            f"{model_name} has {self.total_parameters:,} parameters ({self.trainable_parameters:,} trainable) "
            f"in {weighted} layers with weights, and uses {activations}."
        )
        if self.nonfinite:
            sentence += f" WARNING: its weights are not finite: {self.nonfinite_text}; every analysis will refuse it."
        return sentence

    def plot(self, ax=None):
        """Horizontal bar chart of the parameter count of each layer that has parameters."""
        from deepscope._figures import new_figure

        rows = [row for row in self.layers if row["parameters"]]
        title = f"{self.total_parameters:,} parameters"
        if len(rows) > _MAX_BARS:
            largest = sorted(rows, key=lambda row: row["parameters"], reverse=True)[:_MAX_BARS]
            rows = [row for row in rows if row in largest]
            title += f" ({_MAX_BARS} largest layers shown)"
        if ax is None:
            figure, ax = new_figure(width=6.0, height=max(1.6, 0.28 * len(rows) + 0.9))
        else:
            figure = ax.figure
        labels = [f"{row['name']} ({row['type']})" for row in rows]
        positions = list(range(len(rows)))
        counts = [row["parameters"] for row in rows]
        ax.barh(positions, counts, color="#4c78a8")
        for position, count in zip(positions, counts):
            ax.text(count, position, f" {count:,}", va="center", fontsize=7)
        ax.set_yticks(positions, labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlim(0, 1.18 * max(counts, default=1))
        ax.set_xlabel("parameters")
        ax.set_title(title, fontsize=9)
        return figure


def functional_activations(model: nn.Module) -> tuple[list[str] | None, str]:
    """Functional activations in ``model.forward`` found with ``torch.fx`` (None, reason) if untraceable.

    Example:
        >>> class Net(nn.Module):
        ...     def forward(self, x):
        ...         return torch.tanh(x)
        >>> functional_activations(Net())
        (['tanh'], '')
    """
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception as error:  # noqa: BLE001 - torch.fx raises many kinds of errors on untraceable code
        return None, f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    found: list[str] = []
    for node in graph.nodes:
        name = None
        if node.op == "call_function":
            name = _FUNCTIONS.get(node.target)
        elif node.op == "call_method":
            name = _METHODS.get(str(node.target))
        if name is not None and name not in found:
            found.append(name)
    return found, ""


def _is_activation(module: nn.Module) -> bool:
    return type(module).__module__ == "torch.nn.modules.activation" and not isinstance(
        module, _EXCLUDED_ACTIVATION_MODULES
    )


def _shape_text(output: Any) -> tuple[int, ...] | str | None:
    if isinstance(output, torch.Tensor):
        return tuple(output.shape[1:])
    if isinstance(output, (tuple, list)):
        shapes = [tuple(o.shape[1:]) for o in output if isinstance(o, torch.Tensor)]
        return str(shapes) if shapes else None
    return None


def _kind(module: nn.Module) -> str:
    """The module's class name; a TorchScript module keeps its original class's name in ``original_name``."""
    if isinstance(module, torch.jit.ScriptModule):
        return str(getattr(module, "original_name", type(module).__name__))
    return type(module).__name__


@analysis(takes="model", family="foundation", fixture="cnn", example_kwargs={"input_shape": (1, 8, 8)})
def model_summary(
    model: nn.Module, input_shape: Sequence[int] | None = None, *, example_inputs: torch.Tensor | None = None
) -> ModelSummary:
    """Describe a model: one row per layer with output shape and parameter counts, plus activations.

    Args:
        model: any ``nn.Module`` (left untouched; runs inside the model guard in eval semantics).
        input_shape: shape of ONE example, e.g. ``(1, 8, 8)``; when given, a forward pass on a
            batch of two zero inputs records each layer's output shape.
        example_inputs: a real batch ``(batch, *input_shape)`` to trace instead of zeros (for
            integer inputs such as token ids, or data-dependent models); sets ``input_shape``.

    Returns:
        A :class:`ModelSummary`; ``sum(row["parameters"]) == total_parameters == Σ p.numel()``.

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> summary = model_summary(net, input_shape=(4,))
        >>> summary.total_parameters, summary.layers[0]["output_shape"]
        (58, (8,))
    """
    shape = None
    if example_inputs is not None:
        if not isinstance(example_inputs, torch.Tensor) or example_inputs.ndim < 1 or len(example_inputs) == 0:
            raise invalid_parameter(
                "example_inputs", "model_summary", "a non-empty tensor (batch, *input_shape)", example_inputs
            )
        input_shape = tuple(example_inputs.shape[1:])
    if input_shape is not None:
        try:
            shape = tuple(int(s) for s in input_shape)
        except (TypeError, ValueError):
            shape = None
        if shape is None or any(s < 1 for s in shape) or isinstance(input_shape, (str, bytes)):
            raise invalid_parameter(
                "input_shape", "model_summary", "a sequence of positive ints (one example, no batch)", input_shape
            )

    counts: Counter[str] = Counter()
    trainable: Counter[str] = Counter()
    total = trainable_total = memory = 0
    for name, parameter in model.named_parameters():
        owner = name.rpartition(".")[0]
        counts[owner] += parameter.numel()
        trainable[owner] += parameter.numel() if parameter.requires_grad else 0
        total += parameter.numel()
        trainable_total += parameter.numel() if parameter.requires_grad else 0
        memory += parameter.numel() * parameter.element_size()
    buffer_elements = 0
    for _, buffer in model.named_buffers():
        buffer_elements += buffer.numel()
        memory += buffer.numel() * buffer.element_size()

    modules = dict(model.named_modules())
    listed = [name for name, module in modules.items() if not list(module.children()) or counts.get(name)]
    calls: dict[str, list[Any]] = {name: [] for name in listed}
    output_shape = None
    if shape is not None:
        first = next(iter(model.parameters()), None)
        device = first.device if first is not None else torch.device("cpu")
        dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32
        handles = []
        try:
            for name in listed:
                if isinstance(modules[name], torch.jit.ScriptModule):
                    continue  # TorchScript takes no Python hooks: no per-layer shapes, the model's output still
                handles.append(
                    modules[name].register_forward_hook(
                        lambda module, args, output, name=name: calls[name].append(_shape_text(output))
                    )
                )
            if example_inputs is not None:
                batch = example_inputs.to(device=device, dtype=dtype if example_inputs.is_floating_point() else None)
            else:
                batch = torch.zeros((2, *shape), device=device, dtype=dtype)
            with torch.no_grad():
                output = first_forward(model, batch)
            output_shape = _shape_text(output) if isinstance(output, torch.Tensor) else None
        finally:
            for handle in handles:
                handle.remove()

    layers = []
    for name in listed:
        traced = calls[name]
        layers.append(
            {
                "name": name or "(model)",
                "type": _kind(modules[name]),
                "output_shape": traced[0] if traced else None,
                "calls": len(traced),
                "parameters": counts.get(name, 0),
                "trainable": trainable.get(name, 0),
            }
        )
    layer_types: dict[str, int] = {}
    activation_modules: dict[str, int] = {}
    for name in listed:
        module = modules[name]
        kind = _kind(module)
        layer_types[kind] = layer_types.get(kind, 0) + 1
        if _is_activation(module):
            activation_modules[kind] = activation_modules.get(kind, 0) + 1
    functional, trace_error = functional_activations(model)
    report = current_guard_report(model)
    found = nonfinite_tensors(model)
    nonfinite = []
    for name, bad, size in found:
        layer = name.rpartition(".")[0]
        nonfinite.append(
            {"name": name, "layer": layer, "type": type(modules[layer]).__name__, "bad": bad, "total": size}
        )
    return ModelSummary(
        layers=layers,
        total_parameters=total,
        trainable_parameters=trainable_total,
        buffer_elements=buffer_elements,
        memory_bytes=memory,
        layer_types=layer_types,
        activation_modules=activation_modules,
        functional_activations=functional,
        trace_error=trace_error,
        input_shape=shape,
        output_shape=output_shape if isinstance(output_shape, tuple) else None,
        note=report.note if report is not None else "",
        nonfinite=nonfinite,
        nonfinite_text=describe_nonfinite(model, found) if found else "",
    )
