"""Tracing a model for the graph-based attribution methods (DeepLIFT, LRP) with its extra arguments fixed.

Many real models have optional arguments: bpnet-lite's ``BPNet.forward(X, X_ctl=None)``, its
``ProfileWrapper``/``CountWrapper``, Captum's reference models. ``torch.fx.symbolic_trace(model)``
turns every one of them into a placeholder, so ``if X_ctl is None`` becomes data-dependent control
flow (tracing fails) or the optional branch is traced as if the argument were a tensor. Here the
model is traced through a small wrapper whose ``forward`` takes the attributed input and exactly the
extra positional arguments the caller passes (``model(x, *args)``): the arguments left out keep their
Python defaults, so their branches are resolved while tracing, as ``concrete_args`` would do, and
``**kwargs`` stays an empty dict. The user's model is not changed: the wrapper only holds it.

Two Python patterns of such wrappers are resolved while tracing (bpnet-lite's ``ControlWrapper``:
``if X_ctl != None: ...`` and else ``torch.zeros(X.shape[0], n, X.shape[-1], dtype=X.dtype)``):

* ``value != None`` / ``value == None`` on a traced value: a traced value stands for a tensor (or a number
  computed from one), never for None, so the comparison is True / False as it is in eager PyTorch;
* tensor factories (``torch.zeros``, ``ones``, ``full``, ``empty``, ``arange``) called with traced sizes:
  recorded as calls in the graph, run with the actual sizes (``torch.fx`` otherwise fails in the factory's
  argument parsing, before ``__torch_function__`` can see the traced sizes).

Example:
    >>> import torch
    >>> class WithControl(torch.nn.Module):
    ...     def forward(self, x, control=None):
    ...         return x if control is None else x + control
    >>> graph = trace_model(WithControl(), n_args=0, owner="deeplift")
    >>> [node.op for node in graph.graph.nodes]
    ['placeholder', 'output']
"""

from __future__ import annotations

import inspect
import operator
from collections.abc import Sequence

import torch
import torch.fx as fx
from torch import nn

from deepscope.errors import UnsupportedModelError

__all__ = ["trace_model"]


# tensor factories whose size arguments may be traced values (``x.shape[0]``)
_FACTORIES = (torch.zeros, torch.ones, torch.full, torch.empty, torch.arange)


class _Tracer(fx.Tracer):
    """torch.fx's tracer; modules of ``leaf_types`` are kept as single calls (not traced into); comparisons of
    a traced value with None are resolved and tensor factories are recorded (see the module docstring)."""

    def __init__(self, leaf_types: tuple[type, ...]) -> None:
        super().__init__(autowrap_functions=_FACTORIES)
        # torch.fx patches the autowrapped functions where they are looked up: in the traced forwards' globals
        # and in these modules; ``torch.zeros(...)`` is looked up in torch (only _FACTORIES are patched there)
        self._autowrap_search.append(torch)
        self.leaf_types = leaf_types

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        if self.leaf_types and isinstance(module, self.leaf_types):
            return True
        return super().is_leaf_module(module, qualified_name)

    def to_bool(self, obj: fx.Proxy) -> bool:
        node = obj.node
        if node.op == "call_function" and node.target in (operator.ne, operator.eq) and len(node.args) == 2:
            first, second = node.args
            if (first is None) != (second is None) and isinstance(second if first is None else first, fx.Node):
                return node.target is operator.ne  # a traced value is never None
        return super().to_bool(obj)


def _bound(model: nn.Module, n_args: int) -> nn.Module:
    """A module whose forward is ``model(x, arg0, ..., arg{n-1})`` with exactly ``1 + n_args`` placeholders."""
    names = ["x"] + [f"arg{i}" for i in range(n_args)]
    source = f"def forward(self, {', '.join(names)}):\n    return self.model({', '.join(names)})\n"
    namespace: dict = {}
    exec(compile(source, "<deepscope trace>", "exec"), namespace)  # noqa: S102 - a fixed template, no user text
    bound_class = type("Bound", (nn.Module,), {"forward": namespace["forward"]})
    bound = bound_class()
    bound.model = model
    return bound


def _required_arguments(model: nn.Module) -> list[str]:
    """The names of ``model.forward``'s positional parameters without a default."""
    try:
        parameters = inspect.signature(model.forward).parameters.values()
    except (TypeError, ValueError):  # a builtin or C++ forward: nothing to check
        return []
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p.name for p in parameters if p.kind in positional and p.default is inspect.Parameter.empty]


def trace_model(
    model: nn.Module, *, n_args: int = 0, owner: str, leaf_types: Sequence[type] = (), args_hint: str = ""
) -> fx.GraphModule:
    """Trace ``model(x, *args)`` with ``n_args`` extra positional arguments, the others at their defaults.

    The graph's first placeholder is the attributed input ``x``; the next ``n_args`` placeholders are
    the extra arguments (held fixed by the callers). Steps are named as ``symbolic_trace`` names them.

    ``args_hint`` ends the message for a model with more required arguments than given.

    Raises:
        UnsupportedModelError: more required arguments than ``1 + n_args``, or tracing failed
            (data-dependent control flow, unsupported Python).
    """
    tracer = _Tracer(tuple(leaf_types))
    if tracer.is_leaf_module(model, ""):
        model = nn.Sequential(model)  # a bare built-in layer: one call (named "0"), not its internals
    required = _required_arguments(model)
    if len(required) > 1 + n_args:
        given = f" and {n_args} extra argument(s)" if n_args else ""
        raise UnsupportedModelError(
            f"{owner} needs a model with one input{given}; its forward takes {len(required)} "
            f"({', '.join(required)}){args_hint}."
        )
    try:
        graph = tracer.trace(_bound(model, n_args))
    except Exception as error:  # tracing runs user code: any failure means "not traceable"
        raise UnsupportedModelError(
            f"{owner} needs a model torch.fx can trace (no data-dependent control flow on the input); "
            f"tracing model(x{', *args' if n_args else ''}) failed: {error}"
        ) from error
    for node in graph.nodes:  # the wrapper's "model." prefix off: steps are named as in the user's model
        # an autowrapped factory's mark makes the generated code call torch.fx.wrap("torch.zeros"), which
        # registers that name process-wide and breaks every later trace (a KeyError in fx's patcher)
        node.meta.pop("is_wrapped", None)
        if node.op in ("call_module", "get_attr") and node.target.startswith("model."):
            node.target = node.target[len("model.") :]
        if node.name.startswith("model_"):
            node._rename(node.name[len("model_") :])
    return fx.GraphModule(model, graph, type(model).__name__)
