"""Which graph operations are position-local for in-silico mutagenesis, and how they map windows.

Used by :mod:`deepscope.attribution._ism_local` (fastISM, Nair et al. 2022). A node of the traced
graph is position-local when its output at position ``o`` depends only on its inputs near ``o``:

* ``"window"``: ``Conv1d`` (zero padding, any stride/dilation/groups, int or "same"/"valid"
  padding), ``MaxPool1d`` (padding filled with −inf, floor mode), ``AvgPool1d`` (no padding):
  output ``o`` reads inputs ``[o·s − pad, o·s − pad + d(k−1)]``;
* ``"same"``: elementwise operations (activations, BatchNorm/Dropout in eval mode, ``+ − × ÷``,
  a channel ``cat``) between tensors of the same length, or with operands broadcast along it;
* ``"crop"``: ``x[:, c, a:b]`` (step 1): position ``o`` of the output is ``o + a`` of the input.

Anything else (flatten, dense layers, reductions over positions, attention) is not local.
"""

from __future__ import annotations

import math
import operator
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

__all__ = ["Rule", "rule_for", "tensor_nodes", "is_inplace"]

_POINTWISE_MODULES = (
    nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Softplus, nn.Identity,
    nn.Dropout, nn.Mish, nn.Hardtanh, nn.Softsign, nn.ReLU6, nn.PReLU,
)  # fmt: skip
_POINTWISE_FUNCTIONS = {
    torch.relu, F.relu, torch.exp, torch.log, torch.sigmoid, torch.tanh, F.gelu, F.elu, F.leaky_relu,
    F.softplus, F.silu, torch.abs, torch.square, torch.sqrt, torch.neg, operator.neg,
}  # fmt: skip
_POINTWISE_METHODS = {"relu", "exp", "log", "sigmoid", "tanh", "abs", "square", "sqrt", "neg", "contiguous", "float", "double"}  # fmt: skip
_BINARY_FUNCTIONS = {operator.add, operator.sub, operator.mul, operator.truediv, torch.add, torch.sub, torch.mul, torch.div}  # fmt: skip
_BINARY_METHODS = {"add", "sub", "mul", "div"}


class Rule:
    """How one local node maps windows: ``sources`` read over ``[u_p, u_p + reach)`` per edit."""

    def __init__(self, kind: str, sources: list[fx.Node], **extra: Any) -> None:
        self.kind, self.sources, self.extra = kind, sources, extra


def tensor_nodes(node: fx.Node) -> list[fx.Node]:
    """The graph nodes among a node's arguments (tensors or values computed from them)."""
    found: list[fx.Node] = []
    fx.node.map_arg((node.args, node.kwargs), lambda n: found.append(n) or n)
    return found


def is_inplace(node: fx.Node, module: nn.Module | None) -> bool:
    """An operation that writes into its input (``inplace=True``, a ``relu_``-style method)."""
    if module is not None and getattr(module, "inplace", False):
        return True
    if node.kwargs.get("inplace", False):
        return True
    return node.op == "call_method" and str(node.target).endswith("_") and not str(node.target).startswith("__")


def rule_for(
    node: fx.Node, module: nn.Module | None, ref: dict, local_inputs: list, tensor_inputs: list, n: int
) -> Rule | None:
    """The rule of a node whose tensor inputs include local ones, or None when it is not position-local."""
    length = ref[node].shape[-1]
    windowed = isinstance(module, (nn.Conv1d, nn.MaxPool1d, nn.AvgPool1d)) or node.target is operator.getitem
    if not windowed and any(ref[i].shape[-1] != length for i in local_inputs):
        return None  # elementwise across different lengths (broadcasting): positions do not line up
    if isinstance(module, (nn.Conv1d, nn.MaxPool1d, nn.AvgPool1d)) and len(tensor_inputs) == 1:
        return _window_rule(node, module)
    if isinstance(module, nn.BatchNorm1d):
        return None if module.training else Rule("same", local_inputs, call=module)
    if isinstance(module, _POINTWISE_MODULES) and len(tensor_inputs) == 1:
        if module.training and isinstance(module, nn.Dropout):
            return None
        return Rule("same", local_inputs, call=module)
    function = node.target if node.op == "call_function" else None
    method = node.target if node.op == "call_method" else None
    if len(tensor_inputs) == 1 and (function in _POINTWISE_FUNCTIONS or method in _POINTWISE_METHODS):
        if node.args and node.args[0] is tensor_inputs[0]:
            return Rule("same", local_inputs)
        return None
    if function in _BINARY_FUNCTIONS or method in _BINARY_METHODS:
        for i in tensor_inputs:
            if i not in local_inputs and not _broadcastable(ref[i], length, n):
                return None
        return Rule("same", local_inputs)
    if function is torch.cat and node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0) in (1, -2):
        if all(i in local_inputs or _broadcastable(ref[i], length, n) for i in tensor_inputs):
            return Rule("same", local_inputs)
        return None
    if function is operator.getitem and len(tensor_inputs) == 1:
        return _crop_rule(node, ref)
    return None


def _window_rule(node: fx.Node, module: nn.Module) -> Rule | None:
    if isinstance(module, nn.Conv1d):
        if module.padding_mode != "zeros":
            return None
        k, s, d = module.kernel_size[0], module.stride[0], module.dilation[0]
        # the left padding ("same" pads d(k-1)//2 on the left and the rest on the right)
        p = (
            {"valid": 0, "same": d * (k - 1) // 2}.get(module.padding, None)
            if isinstance(module.padding, str)
            else module.padding[0]
        )
        call = lambda x: F.conv1d(x, module.weight, module.bias, s, 0, d, module.groups)  # noqa: E731
        return Rule("window", [node.args[0]], k=k, s=s, d=d, p=p, fill=0.0, call=call, conv=module)
    k, s = _one(module.kernel_size), _one(module.stride)
    p = _one(module.padding)
    if module.ceil_mode:
        return None
    if isinstance(module, nn.MaxPool1d):
        if module.return_indices:
            return None
        d = _one(module.dilation)
        call = lambda x: F.max_pool1d(x, k, s, 0, d)  # noqa: E731
        return Rule("window", [node.args[0]], k=k, s=s, d=d, p=p, fill=-math.inf, call=call)
    if p != 0:
        return None
    return Rule("window", [node.args[0]], k=k, s=s, d=1, p=0, fill=0.0, call=lambda x: F.avg_pool1d(x, k, s))


def _crop_rule(node: fx.Node, ref: dict) -> Rule | None:
    index = fx.node.map_arg(node.args[1], lambda n: ref[n])
    if not isinstance(index, tuple) or len(index) != 3 or index[0] != slice(None):
        return None
    if not all(isinstance(i, slice) for i in index):
        return None
    start, stop, step = index[2].indices(ref[node.args[0]].shape[-1])
    if step != 1:
        return None
    return Rule("crop", [node.args[0]], a=start, channels=index[1])


def _broadcastable(value: Any, length: int, n: int) -> bool:
    """A reference operand of an elementwise op: a number, or a tensor with the full length or none."""
    if not isinstance(value, torch.Tensor):
        return True
    if value.dim() == 3:
        return value.shape[0] in (1, n) and value.shape[-1] in (1, length)
    return value.dim() <= 2 and (value.dim() < 2 or value.shape[-1] == 1)


def _one(value: Any) -> int:
    return int(value[0]) if isinstance(value, (tuple, list)) else int(value)
