"""The network LRP walks backwards, as a ``torch.fx`` graph of steps: affine layers (BatchNorm folded
in), pools, element-wise activations, reshapes, sums (residual connections) and concatenations.

Relevance flows from the output to the input in reverse topological order. Each step hands its
output relevance to its inputs: affine layers and pools by the chosen LRP rule (``propagate``),
activations and reshapes unchanged, a sum ``z = a + b`` in proportion to each operand
(``R_a = a·R/(z + ε·sign z)``, the ε-rule of a sum), a concatenation by slicing. A tensor used
twice (the input of a residual block) collects the relevance of both uses. Operations without a
rule (softmax, products or quotients of activations, attention) raise
:class:`~deepscope.errors.UnsupportedModelError` naming the step, when the output depends on them:
dead branches, and outputs that ``output_fn`` does not pick from a tuple or dict, are not checked.

Example:
    >>> import torch
    >>> class Block(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.inner, self.head = torch.nn.Linear(4, 4), torch.nn.Linear(4, 2)
    ...     def forward(self, x):
    ...         return self.head(x + torch.relu(self.inner(x)))
    >>> graph = LrpGraph(Block())
    >>> sorted({step.kind for step in graph.steps.values()})
    ['add', 'input', 'linear', 'pass']
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable
from typing import Any

import torch
import torch.fx as fx
from torch import nn
from torch.nn import functional as F

from deepscope._batchnorm import BATCHNORMS, fold_batchnorm
from deepscope._outputs import ancestors, picked_node
from deepscope.attribution._elementwise import ACTIVATION_FUNCTIONS, ACTIVATION_METHODS, ACTIVATION_MODULES
from deepscope.attribution._trace import trace_model
from deepscope.errors import UnsupportedModelError

__all__ = ["LrpGraph", "Step", "stabilise"]

# element-wise activations (and dropout, identity, negation) pass relevance on unchanged
_PASS_MODULES = (
    *ACTIVATION_MODULES,
    nn.Identity,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
)
_POOL_MODULES = (
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
)  # fmt: skip
_BATCHNORMS = BATCHNORMS  # the one list, with the folding arithmetic (deepscope/_batchnorm.py)
_PASS_FUNCTIONS = {
    *ACTIVATION_FUNCTIONS, F.dropout, F.dropout1d, F.dropout2d, F.dropout3d,
    operator.neg, torch.neg,  # y = −a: R_a = a·(−1)·R/(−a) = R
}  # fmt: skip
_PASS_METHODS = {*ACTIVATION_METHODS, "neg"} | {f"{name}_" for name in (*ACTIVATION_METHODS, "neg")}
_POOL_FUNCTIONS = {
    F.max_pool1d, F.max_pool2d, F.max_pool3d, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
    F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d,
}  # fmt: skip
_RESHAPE_FUNCTIONS = {torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze}
_RESHAPE_METHODS = {"flatten", "view", "reshape", "squeeze", "unsqueeze"}
_ADD = {operator.add, operator.iadd, torch.add, "add", "add_"}  # in-place forms run out of place here
# linear reductions, propagated like average pooling (the epsilon rule through their gradient)
_REDUCE_FUNCTIONS = {torch.mean, torch.sum}
_REDUCE_METHODS = {"mean", "sum"}
_CAT = {torch.cat, torch.concat}
_SHAPE_METHODS = {"size", "dim"}


@dataclasses.dataclass
class Step:
    """What one graph node does for LRP.

    ``kind``: "linear"/"conv" (affine, ``weight``/``bias`` with BatchNorm folded in), "pool", "pass"
    (element-wise activation, or a BatchNorm folded into its producer), "reshape", "add", "cat",
    "shape" (a size look-up: no relevance) or "input".
    """

    kind: str
    module: nn.Module | None = None
    weight: torch.Tensor | None = None
    bias: torch.Tensor | None = None
    call: Callable[[torch.Tensor], torch.Tensor] | None = None

    def run(self, a: torch.Tensor, weight: torch.Tensor | None = None, bias: Any = "same") -> torch.Tensor:
        """The step on input ``a`` (affine steps: with other weights/bias when given)."""
        weight = self.weight if weight is None else weight
        bias = self.bias if isinstance(bias, str) else bias
        if self.kind == "linear":
            return F.linear(a, weight, bias)
        if self.kind == "conv":
            m = self.module
            return m._conv_forward(a, weight, bias) if hasattr(m, "_conv_forward") else m(a)
        return self.call(a) if self.call is not None else self.module(a)


class LrpGraph:
    """A traced model as LRP steps; :meth:`forward` keeps every activation, :meth:`relevance` walks back."""

    def __init__(self, model: nn.Module, output_fn: Callable[[Any], Any] | None = None) -> None:
        # traced as model(x): optional arguments keep their defaults (forward(x, extra=None) traces the
        # None branch), and a bare built-in layer is one call, not its internals
        self.graph_module = trace_model(model, owner="lrp")
        self.nodes = list(self.graph_module.graph.nodes)
        inputs = [node for node in self.nodes if node.op == "placeholder"]
        if len(inputs) != 1:
            raise UnsupportedModelError(f"lrp needs a model with one input; its forward takes {len(inputs)}.")
        self.input = inputs[0]
        self.output = picked_node(self.graph_module, output_fn, "lrp", "to explain")
        live = ancestors(self.output)
        self.steps: dict[fx.Node, Step] = {}
        for node in self.nodes:  # only the steps the selected output depends on need a rule
            if node is self.input or node in live:
                self.steps[node] = self._step(node)

    # ------------------------------------------------------------------------------------------
    # building

    def _step(self, node: fx.Node) -> Step:
        if node.op == "placeholder":
            return Step("input")
        if node.op == "get_attr" or _is_shape_lookup(node, self.steps):
            return Step("shape")
        self._check_in_place(node)
        if node.op == "call_module":
            return self._module_step(node, self.graph_module.get_submodule(node.target))
        target = node.target
        if node.op in ("call_function", "call_method") and target in _ADD:
            if node.kwargs.get("alpha", 1) != 1:
                raise UnsupportedModelError(f"lrp has no rule for a scaled sum (step '{node.name}', alpha != 1).")
            return Step("add")
        if node.op == "call_function" and target in _CAT:
            return Step("cat")
        if (
            node.op == "call_function"
            and target in _RESHAPE_FUNCTIONS
            or (node.op == "call_method" and target in _RESHAPE_METHODS)
        ):
            return Step("reshape")
        if (
            node.op == "call_function"
            and target in _PASS_FUNCTIONS
            or (node.op == "call_method" and target in _PASS_METHODS)
        ):
            return Step("pass")
        if node.op == "call_function" and (target in _POOL_FUNCTIONS or target in _REDUCE_FUNCTIONS):
            self._single_tensor_input(node)
            args, kwargs = node.args[1:], dict(node.kwargs)
            return Step("pool", call=lambda a: target(a, *args, **kwargs))
        if node.op == "call_method" and target in _REDUCE_METHODS:
            self._single_tensor_input(node)
            args, kwargs = node.args[1:], dict(node.kwargs)
            return Step("pool", call=lambda a: getattr(a, target)(*args, **kwargs))
        raise UnsupportedModelError(f"lrp has no propagation rule for step '{node.name}' ({_describe(node)}).")

    def _module_step(self, node: fx.Node, module: nn.Module) -> Step:
        self._single_tensor_input(node)
        if isinstance(module, nn.Linear):
            return Step("linear", module, module.weight.detach(), _bias(module))
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            return Step("conv", module, module.weight.detach(), _bias(module))
        if isinstance(module, _BATCHNORMS):
            self._fold(node, module)
            return Step("pass", module)
        if isinstance(module, _POOL_MODULES):
            return Step("pool", module)
        if isinstance(module, (nn.Flatten, nn.Unflatten)):
            return Step("reshape", module)
        if isinstance(module, _PASS_MODULES):
            return Step("pass", module)
        raise UnsupportedModelError(
            f"lrp supports Linear/Conv/BatchNorm/pooling/activation/reshape layers, sums and concatenations; "
            f"step '{node.name}' is a {type(module).__name__}."
        )

    def _fold(self, node: fx.Node, norm: nn.Module) -> None:
        """Merge eval-mode BatchNorm into the Linear/Conv feeding it (that step's output is then final)."""
        producer = node.args[0]
        previous = self.steps.get(producer) if isinstance(producer, fx.Node) else None
        if previous is None or previous.kind not in ("linear", "conv") or len(producer.users) != 1:
            raise UnsupportedModelError(
                f"lrp merges BatchNorm into the Linear/Conv layer before it; '{node.name}' follows no such layer."
            )
        if norm.running_var is None:
            raise UnsupportedModelError("lrp needs BatchNorm running statistics (track_running_stats=True).")
        previous.weight, previous.bias = fold_batchnorm(
            previous.weight,
            previous.bias,
            mean=norm.running_mean,
            var=norm.running_var,
            eps=norm.eps,
            gamma=norm.weight.detach() if norm.affine else None,
            beta=norm.bias.detach() if norm.affine else None,
        )

    def _check_in_place(self, node: fx.Node) -> None:
        """An in-place step is run out of place here (the stored activations must not change); that is
        the model's own computation only when nothing else reads the tensor it overwrites."""
        in_place = (
            node.kwargs.get("inplace") is True
            or (node.op == "call_method" and node.target.endswith("_"))
            or (node.op == "call_module" and getattr(self.graph_module.get_submodule(node.target), "inplace", False))
        )
        source = node.args[0] if node.args else None
        if in_place and isinstance(source, fx.Node) and len(source.users) > 1:
            raise UnsupportedModelError(
                f"lrp: step '{node.name}' ({_describe(node)}) works in place on '{source.name}', which other steps "
                "also read; use the out-of-place form (e.g. nn.ReLU(inplace=False))."
            )

    def _single_tensor_input(self, node: fx.Node) -> None:
        tensors = [a for a in (*node.args, *node.kwargs.values()) if isinstance(a, fx.Node)]
        if len(tensors) != 1 or self.steps.get(tensors[0], Step("shape")).kind == "shape":
            raise UnsupportedModelError(
                f"lrp needs layers called on one tensor; step '{node.name}' ({_describe(node)}) gets {len(tensors)}."
            )

    # ------------------------------------------------------------------------------------------
    # running

    def forward(self, x: torch.Tensor) -> dict[fx.Node, Any]:
        """Every node's value for input ``x`` (affine steps with BatchNorm folded in)."""
        values: dict[fx.Node, Any] = {}
        for node in self.nodes:
            if node.op == "output":
                break
            if node not in self.steps:  # a dead branch, or an output output_fn does not pick
                continue
            step = self.steps[node]
            if step.kind == "input":
                values[node] = x
            elif step.kind in ("linear", "conv", "pool") or (
                step.kind == "pass" and isinstance(step.module, _BATCHNORMS)
            ):
                source = values[node.args[0]]
                values[node] = source if step.kind == "pass" else step.run(source)  # BatchNorm: already folded
            else:  # activations, reshapes, sums, concatenations and size look-ups: the node itself
                values[node] = self._evaluate(node, values)
        return values

    def _evaluate(self, node: fx.Node, values: dict[fx.Node, Any]) -> Any:
        """The node's value, computed out of place: every earlier activation must stay as it was
        (``out += identity`` and ``ReLU(inplace=True)`` would otherwise overwrite them)."""
        args = fx.node.map_arg(node.args, lambda n: values[n])
        kwargs = fx.node.map_arg(node.kwargs, lambda n: values[n])
        if self.steps[node].kind == "add":
            return args[0] + args[1]
        if "inplace" in kwargs:
            kwargs = {**kwargs, "inplace": False}
        if node.op == "call_module":
            module = self.graph_module.get_submodule(node.target)
            return module(args[0].clone(), *args[1:]) if getattr(module, "inplace", False) else module(*args, **kwargs)
        if node.op == "call_method":
            name = node.target[:-1] if node.target.endswith("_") and node.target != "__" else node.target
            return getattr(args[0], name)(*args[1:], **kwargs)
        if node.op == "get_attr":
            return _fetch(self.graph_module, node.target)
        return node.target(*args, **kwargs)

    def relevance(
        self,
        values: dict[fx.Node, Any],
        output_relevance: torch.Tensor,
        propagate: Callable[[Step, torch.Tensor, torch.Tensor], torch.Tensor],
        epsilon: float,
    ) -> torch.Tensor:
        """Relevance at the input, from ``output_relevance`` at the output (see the module docstring)."""
        pending: dict[fx.Node, torch.Tensor] = {self.output: output_relevance}

        def give(node: Any, relevance: torch.Tensor) -> None:
            if isinstance(node, fx.Node) and self.steps[node].kind not in ("shape",):
                pending[node] = pending[node] + relevance if node in pending else relevance

        for node in reversed(self.nodes):
            if node not in pending or node.op == "output":
                continue
            relevance, step = pending.pop(node), self.steps[node]
            if step.kind == "input":
                return relevance
            source = node.args[0] if node.args else None
            if step.kind in ("linear", "conv", "pool"):
                give(source, propagate(step, values[source], relevance))
            elif step.kind == "pass":
                give(source, relevance)
            elif step.kind == "reshape":
                give(source, relevance.reshape(values[source].shape))
            elif step.kind == "add":
                share = relevance / stabilise(values[node], epsilon)
                for operand in node.args[:2]:
                    if isinstance(operand, fx.Node) and isinstance(values[operand], torch.Tensor):
                        contribution = values[operand] * share
                        give(operand, contribution.sum_to_size(values[operand].shape))
            elif step.kind == "cat":
                parts, dim = node.args[0], node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
                sizes = [values[p].shape[dim] if isinstance(p, fx.Node) else 0 for p in parts]
                for part, piece in zip(parts, relevance.split(sizes, dim=dim)):
                    give(part, piece)
        raise UnsupportedModelError("lrp: the output does not depend on the input.")


def stabilise(z: torch.Tensor, epsilon: float) -> torch.Tensor:
    """``z + ε·sign(z)`` with sign(±0) = +1, so that no share divides by zero.

    Float arithmetic only (sign − |sign| + 1 is +1 at ±0): a bool mask and ``torch.where`` over an
    activation map cost several times more on CPU.
    """
    sign = torch.sign(z)
    return z + epsilon * (sign - sign.abs() + 1.0)


def _bias(module: nn.Module) -> torch.Tensor:
    out = module.weight.shape[0]
    return (
        module.bias.detach()
        if module.bias is not None
        else torch.zeros(out, dtype=module.weight.dtype, device=module.weight.device)
    )


def _fetch(graph_module: fx.GraphModule, target: str) -> Any:
    value: Any = graph_module
    for part in target.split("."):
        value = getattr(value, part)
    return value


def _is_shape_lookup(node: fx.Node, steps: dict[fx.Node, Step]) -> bool:
    """``x.size(d)``, ``x.dim()``, ``x.shape`` and ``x.shape[d]``: values, not activations."""
    if node.op == "call_method" and node.target in _SHAPE_METHODS:
        return True
    if node.op == "call_function" and node.target is getattr and node.args[1] in ("shape", "ndim"):
        return True
    first = node.args[0] if node.args else None
    return (
        node.op == "call_function"
        and node.target is operator.getitem
        and isinstance(first, fx.Node)
        and steps.get(first, Step("input")).kind == "shape"
    )


def _describe(node: fx.Node) -> str:
    if node.op == "call_method":
        return f"tensor.{node.target}"
    if node.op == "call_function":
        return getattr(node.target, "__name__", str(node.target))
    return f"{node.op} {node.target}"
