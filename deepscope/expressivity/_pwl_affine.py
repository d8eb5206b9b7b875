"""The affine layers of the piecewise-linear graph walk: each maps every piece's affine map directly.

A value is ``(P, k + 1, *features)`` (see :mod:`._pwl_values`): an affine layer ``y = L(x) + c``
maps the ``k`` direction columns by the linear part ``L`` and the constant column by ``L(·) + c``,
so no piece is cut. Linear, Conv, eval BatchNorm, average pooling, padding, Flatten, Dropout in eval,
residual additions, scalar arithmetic and concatenation are affine.
"""

from __future__ import annotations

import operator

import torch
from torch import fx, nn

from deepscope.errors import InvalidParameterError
from deepscope.expressivity._pwl_values import Affine, unsupported

__all__ = ["AFFINE_MODULES", "affine", "arithmetic", "concatenate", "reshape"]

AFFINE_MODULES = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Flatten,
    nn.Unflatten,
    nn.Identity,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.ZeroPad2d,
    nn.ConstantPad1d,
    nn.ConstantPad2d,
)
_CHUNK = 4096


def affine(module: nn.Module, value: Affine, node: fx.Node) -> Affine:
    """The layer on every piece's map: ``L`` on the ``k`` direction columns, ``L(·) + c`` on the constant."""
    pieces, columns = value.shape[:2]
    features = value.shape[2:]
    if type(module) is nn.Linear and len(features) == 1 and features[0] == module.in_features:
        # one matmul on the maps, the bias on the constant column only (the generic path below runs
        # the layer on every column, then subtracts the bias again from the k direction columns)
        weight = module.weight.detach().to(value.dtype)
        bias = None if module.bias is None else module.bias.detach().to(value.dtype)
        if value.rectified is not None and weight.device.type == "cpu":
            # after a ReLU: the parents' maps times the slopes, block by block into the matmul (the
            # (P, k + 1, units) ReLU output is never materialised; same products, same sums)
            return Affine(value.rectified.linear(weight, bias))
        mapped = torch.matmul(value.tensor, weight.T)
        if bias is not None:
            mapped[:, -1] += bias
        return Affine(mapped)
    tensor = value.tensor
    try:
        with torch.no_grad():
            offset = module(torch.zeros((1, *features), dtype=tensor.dtype, device=tensor.device))
            flat = tensor.reshape(pieces * columns, *features)
            mapped = torch.cat([module(chunk) for chunk in flat.split(_CHUNK)])
    except RuntimeError as error:
        raise InvalidParameterError(
            f"The input domain does not fit the model: layer '{node.target}' ({type(module).__name__}) "
            f"failed on inputs of shape {tuple(features)} ({error})."
        ) from error
    mapped = mapped.reshape(pieces, columns, *mapped.shape[1:]).clone()
    mapped[:, :-1] -= offset
    return Affine(mapped)


def arithmetic(target, args: tuple, node: fx.Node) -> Affine:
    if target is operator.neg:
        return Affine(-args[0].tensor)
    left, right = args[0], args[1]
    if isinstance(left, Affine) and isinstance(right, Affine):
        if target in (operator.add, torch.add):
            return Affine(left.tensor + right.tensor)
        if target is operator.sub:
            return Affine(left.tensor - right.tensor)
        raise unsupported(node, "product of two activations")
    if isinstance(right, Affine):
        left, right = right, left
        if target is operator.sub:
            return Affine(_add_constant(-left.tensor, right))
        if target is operator.truediv:
            raise unsupported(node, "division by an activation")
    if not isinstance(right, (int, float)):
        raise unsupported(node, "arithmetic with a non-scalar constant")
    if target in (operator.add, torch.add):
        return Affine(_add_constant(left.tensor, right))
    if target is operator.sub:
        return Affine(_add_constant(left.tensor, -right))
    if target is operator.mul:
        return Affine(left.tensor * right)
    return Affine(left.tensor / right)


def concatenate(args: tuple, kwargs: dict, node: fx.Node) -> Affine:
    parts = args[0]
    dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
    if not all(isinstance(part, Affine) for part in parts):
        raise unsupported(node, "concatenation with a constant")
    features = parts[0].tensor.ndim - 2
    dim = dim + features + 1 if dim < 0 else dim
    if dim == 0:
        raise unsupported(node, "concatenation along the batch dimension")
    return Affine(torch.cat([part.tensor for part in parts], dim=dim + 1))


def _add_constant(tensor: torch.Tensor, constant: float) -> torch.Tensor:
    tensor = tensor.clone()
    tensor[:, -1] += constant
    return tensor


def reshape(value: Affine, node: fx.Node, shape: tuple | None = None, flatten_from: int = 0) -> Affine:
    tensor = value.tensor
    if shape is not None:
        return Affine(tensor.reshape(tensor.shape[0], tensor.shape[1], *shape[1:]))
    if flatten_from < 1:
        raise unsupported(node, "flattening the batch dimension")
    return Affine(tensor.flatten(start_dim=flatten_from + 1))
