"""Tracing a model for the graph-based attribution methods (DeepLIFT, LRP) with its extra arguments fixed.

Many real models have optional arguments: bpnet-lite's ``BPNet.forward(X, X_ctl=None)``, its
``ProfileWrapper``/``CountWrapper``, Captum's reference models. ``torch.fx.symbolic_trace(model)``
turns every one of them into a placeholder, so ``if X_ctl is None`` becomes data-dependent control
flow (tracing fails) or the optional branch is traced as if the argument were a tensor. Here the
model is traced through a small wrapper whose ``forward`` takes the attributed input and exactly the
extra positional arguments the caller passes (``model(x, *args)``): the arguments left out keep their
Python defaults, so their branches are resolved while tracing, as ``concrete_args`` would do, and
``**kwargs`` stays an empty dict. The user's model is not changed: the wrapper only holds it.

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
from collections.abc import Sequence

import torch.fx as fx
from torch import nn

from deepscope.errors import UnsupportedModelError

__all__ = ["trace_model"]


class _Tracer(fx.Tracer):
    """torch.fx's tracer; modules of ``leaf_types`` are kept as single calls (not traced into)."""

    def __init__(self, leaf_types: tuple[type, ...]) -> None:
        super().__init__()
        self.leaf_types = leaf_types

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        if self.leaf_types and isinstance(module, self.leaf_types):
            return True
        return super().is_leaf_module(module, qualified_name)


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
        if node.op in ("call_module", "get_attr") and node.target.startswith("model."):
            node.target = node.target[len("model.") :]
        if node.name.startswith("model_"):
            node._rename(node.name[len("model_") :])
    return fx.GraphModule(model, graph, type(model).__name__)
