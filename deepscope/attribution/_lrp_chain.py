"""The layer chain LRP walks backwards: a model's leaf modules in order, from ``nn.Sequential``
nesting or from a ``torch.fx`` trace of a custom ``forward`` that is a chain.

A traced forward is a chain when every operation takes the previous operation's output as its
only tensor input, e.g. ``x = self.features(x); x = x.view(x.size(0), -1); return self.head(F.relu(x))``.
Functional activations, pools and reshapes in it become small modules (:class:`FunctionStep`);
shape look-ups such as ``x.size(0)`` or ``x.shape[0]`` are allowed as arguments of a reshape of
that same ``x``. Anything else — a residual addition, a concatenation, a second input, an
operation LRP has no rule for — raises :class:`~deepscope.errors.UnsupportedModelError` naming it.

Example:
    >>> import torch
    >>> class Net(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.body, self.head = torch.nn.Linear(4, 3), torch.nn.Linear(3, 2)
    ...     def forward(self, x):
    ...         return self.head(torch.relu(self.body(x)))
    >>> [type(step).__name__ for step in layer_chain(Net())]
    ['Linear', 'FunctionStep', 'Linear']
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import torch
import torch.fx as fx
from torch import nn
from torch.nn import functional as F

from deepscope.errors import UnsupportedModelError

__all__ = ["FunctionStep", "layer_chain"]

# functions and tensor methods LRP passes relevance through unchanged (element-wise activations)
_PASS_FUNCTIONS = {
    F.relu, torch.relu, F.relu6, F.leaky_relu, F.elu, F.gelu, F.silu, torch.tanh, F.tanh, torch.sigmoid,
    F.sigmoid, F.softplus, F.dropout, F.dropout1d, F.dropout2d, F.dropout3d,
}  # fmt: skip
_PASS_METHODS = {"relu", "tanh", "sigmoid"}
_POOL_FUNCTIONS = {
    F.max_pool1d, F.max_pool2d, F.max_pool3d, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
    F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d,
}  # fmt: skip
_RESHAPE_FUNCTIONS = {torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze}
_RESHAPE_METHODS = {"flatten", "view", "reshape", "squeeze", "unsqueeze"}


class _InputSize:
    """Placeholder for ``x.size(dim)`` of the step's own input inside a reshape's arguments."""

    def __init__(self, dim: int) -> None:
        self.dim = dim

    def __repr__(self) -> str:
        return f"x.size({self.dim})"


class FunctionStep(nn.Module):
    """One functional operation of a traced chain as a module: ``kind`` is "pass", "pool" or "reshape"."""

    def __init__(self, kind: str, call: Callable[..., torch.Tensor], args: tuple, kwargs: dict, name: str) -> None:
        super().__init__()
        self.kind, self.call, self.args, self.kwargs, self.name = kind, call, args, kwargs, name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        args = [x.shape[a.dim] if isinstance(a, _InputSize) else a for a in self.args]
        return self.call(x, *args, **self.kwargs)

    def extra_repr(self) -> str:
        return f"{self.kind}: {self.name}{tuple(self.args)}"


def layer_chain(model: nn.Module) -> list[nn.Module]:
    """The model's layers in forward order (nested ``nn.Sequential`` flattened, custom forwards traced)."""
    if isinstance(model, nn.Sequential):
        return [leaf for child in model for leaf in layer_chain(child)]
    if type(model).__module__.startswith("torch.nn"):
        return [model]  # a built-in layer: the caller decides whether LRP has a rule for it
    try:
        graph_module = fx.symbolic_trace(model)
    except Exception as error:  # tracing runs user code: any failure means "not a traceable chain"
        raise UnsupportedModelError(
            f"lrp needs an nn.Sequential or a forward torch.fx can trace as a chain of layers; tracing failed: {error}"
        ) from error
    return _chain_from_graph(graph_module)


def _chain_from_graph(graph_module: fx.GraphModule) -> list[nn.Module]:
    placeholders = [node for node in graph_module.graph.nodes if node.op == "placeholder"]
    if len(placeholders) != 1:
        raise UnsupportedModelError(f"lrp needs a model with one input; its forward takes {len(placeholders)}.")
    current, chain = placeholders[0], []
    shape_of: dict[fx.Node, tuple[fx.Node, int] | fx.Node] = {}  # size/shape look-ups: node -> (source, dim)
    for node in graph_module.graph.nodes:
        if node.op == "placeholder":
            continue
        if _record_shape_lookup(node, shape_of):
            continue
        if node.op == "output":
            if node.args[0] is not current:
                raise UnsupportedModelError("lrp needs a model whose output is the last layer's output (one tensor).")
            return chain
        if not node.args or node.args[0] is not current:
            raise UnsupportedModelError(
                f"lrp needs a chain of layers; the traced forward's step '{node.name}' ({_describe(node)}) does not "
                "take the previous step's output as its input (a residual connection or branch?)."
            )
        chain.append(_as_module(graph_module, node, current, shape_of))
        current = node
    raise UnsupportedModelError("lrp could not find the traced forward's output.")  # pragma: no cover


def _record_shape_lookup(node: fx.Node, shape_of: dict) -> bool:
    """Remember ``x.size(d)``, ``x.shape`` and ``x.shape[d]`` nodes (they may size a later reshape)."""
    if node.op == "call_method" and node.target == "size" and len(node.args) == 2 and isinstance(node.args[1], int):
        shape_of[node] = (node.args[0], node.args[1])
        return True
    if node.op == "call_function" and node.target is getattr and node.args[1] == "shape":
        shape_of[node] = node.args[0]
        return True
    if node.op == "call_function" and node.target is operator.getitem and node.args[0] in shape_of:
        source = shape_of[node.args[0]]
        if isinstance(source, fx.Node) and isinstance(node.args[1], int):
            shape_of[node] = (source, node.args[1])
            return True
    return False


def _as_module(graph_module: fx.GraphModule, node: fx.Node, source: fx.Node, shape_of: dict) -> nn.Module:
    if node.op == "call_module":
        if len(node.args) != 1 or node.kwargs:
            raise UnsupportedModelError(
                f"lrp needs layers called on one tensor; '{node.name}' ({node.target}) gets more arguments."
            )
        return graph_module.get_submodule(node.target)
    extra = [_argument(node, value, source, shape_of) for value in node.args[1:]]
    kwargs = {key: _argument(node, value, source, shape_of) for key, value in node.kwargs.items()}
    if node.op == "call_function":
        kind = (
            "pass" if node.target in _PASS_FUNCTIONS
            else "pool" if node.target in _POOL_FUNCTIONS
            else "reshape" if node.target in _RESHAPE_FUNCTIONS
            else None
        )  # fmt: skip
        if kind is not None:
            return FunctionStep(kind, node.target, tuple(extra), kwargs, getattr(node.target, "__name__", str(node)))
    if node.op == "call_method":
        kind = "pass" if node.target in _PASS_METHODS else "reshape" if node.target in _RESHAPE_METHODS else None
        if kind is not None:
            return FunctionStep(kind, _method(node.target), tuple(extra), kwargs, f".{node.target}")
    raise UnsupportedModelError(
        f"lrp has no propagation rule for '{node.name}' ({_describe(node)}) in the traced forward."
    )


def _argument(node: fx.Node, value: Any, source: fx.Node, shape_of: dict) -> Any:
    """A constant argument, or ``x.size(d)`` of the step's own input; other tensors are refused."""
    if not isinstance(value, fx.Node):
        if isinstance(value, (list, tuple)):
            return type(value)(_argument(node, item, source, shape_of) for item in value)
        return value
    looked_up = shape_of.get(value)
    if isinstance(looked_up, tuple) and looked_up[0] is source:
        return _InputSize(looked_up[1])
    raise UnsupportedModelError(
        f"lrp needs a chain of layers; step '{node.name}' ({_describe(node)}) also uses '{value.name}' "
        "(a second tensor, e.g. a residual addition or concatenation)."
    )


def _method(name: str) -> Callable[..., torch.Tensor]:
    def call(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return getattr(x, name)(*args, **kwargs)

    return call


def _describe(node: fx.Node) -> str:
    if node.op == "call_method":
        return f"tensor.{node.target}"
    if node.op == "call_function":
        return getattr(node.target, "__name__", str(node.target))
    return f"{node.op} {node.target}"
