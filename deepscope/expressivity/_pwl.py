"""Walk a piecewise-linear network's torch.fx graph, carrying affine maps over a partition.

Each value in the graph is held, for every current piece of the input domain, as its affine map
in the domain's ``k`` coordinates: a tensor ``(P, k + 1, *features)`` whose first ``k`` columns
are the linear part and whose last column is the constant. Affine layers (Linear, Conv, eval
BatchNorm, pooling by averages, Flatten, Dropout in eval, ...) map these columns directly; at a
ReLU, LeakyReLU or max-pool the pieces are cut (see :mod:`._geometry`) so that the layer is affine
on every piece, and every live value is re-indexed to the new pieces.
"""

from __future__ import annotations

import dataclasses
import operator

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from deepscope._batchnorm import BATCHNORMS
from deepscope.errors import DeepscopeError, InvalidParameterError, UnsupportedModelError
from deepscope.expressivity import _geometry as geometry

__all__ = ["PartitionState", "Affine", "propagate", "trace"]

_AFFINE_MODULES = (
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


@dataclasses.dataclass
class Affine:
    """An affine map per piece: ``tensor (P, k + 1, *features)``."""

    tensor: torch.Tensor


@dataclasses.dataclass
class PartitionState:
    """The current pieces, their activation patterns so far, and the bookkeeping of the walk."""

    pieces: geometry.Pieces
    tol: float
    max_regions: int
    patterns: list[np.ndarray] = dataclasses.field(default_factory=list)
    layers: list[dict] = dataclasses.field(default_factory=list)

    def regroup(self, pieces: geometry.Pieces, parent: np.ndarray) -> None:
        self.pieces = pieces
        self.patterns = [pattern[parent] for pattern in self.patterns]
        if len(pieces) > self.max_regions:
            raise DeepscopeError(
                f"The exact partition has more than max_regions={self.max_regions} pieces; pass a smaller "
                "domain (bounds, margin, a line instead of a plane) or raise max_regions."
            )


def trace(model: nn.Module) -> fx.GraphModule:
    """``torch.fx.symbolic_trace`` with a deepscope error when the model cannot be traced."""
    if not isinstance(model, nn.Sequential) and type(model).__module__.startswith("torch.nn"):
        model = nn.Sequential(model)  # a bare built-in layer: trace it as a leaf, not into F.linear
    try:
        return fx.symbolic_trace(model)
    except Exception as error:  # any tracing failure means the graph cannot be walked exactly
        raise UnsupportedModelError(
            f"Exact linear regions need a model torch.fx can trace; tracing {type(model).__name__} failed "
            f"({type(error).__name__}: {error})."
        ) from error


def propagate(graph_module: fx.GraphModule, start: torch.Tensor, state: PartitionState, progress: bool = False):
    """Interpret the graph on the affine input map ``start (1, k + 1, *input_shape)``.

    Returns the output's affine map ``(P, k + 1, outputs)``; ``state`` holds the final pieces.
    """
    nodes = list(graph_module.graph.nodes)
    last_use = {}
    for position, node in enumerate(nodes):
        for used in node.all_input_nodes:
            last_use[used] = position
    modules = dict(graph_module.named_modules())
    env: dict[fx.Node, object] = {}
    placeholders = 0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(nodes), desc="linear regions", unit="node")
    for position, node in enumerate(nodes):
        if node.op == "placeholder":
            if placeholders:
                raise UnsupportedModelError(
                    f"Exact linear regions take models with one input; '{node.name}' is a second one."
                )
            placeholders += 1
            env[node] = Affine(start)
        elif node.op == "output":
            output = env[node.args[0]] if isinstance(node.args[0], fx.Node) else None
            if not isinstance(output, Affine):
                raise UnsupportedModelError(
                    "Exact linear regions need a model that returns one tensor (there is no output_fn here: "
                    "wrap the model so that its forward returns the tensor to partition)."
                )
            tensor = output.tensor
            return tensor.reshape(tensor.shape[0], tensor.shape[1], -1)
        else:
            args = fx.node.map_arg(node.args, lambda n: env[n])
            kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n])
            result, parent = _evaluate(node, modules, args, kwargs, state)
            del args, kwargs
            for used in node.all_input_nodes:  # free dead values before re-indexing the live ones
                if last_use.get(used) == position:
                    env.pop(used, None)
            if parent is not None:
                for key, value in env.items():
                    if isinstance(value, Affine):
                        env[key] = Affine(value.tensor[torch.as_tensor(parent, device=value.tensor.device)])
            env[node] = result
        for used in node.all_input_nodes:
            if last_use.get(used) == position:
                env.pop(used, None)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(regions=len(state.pieces))
    raise UnsupportedModelError("The traced graph has no output node.")


def _unsupported(node: fx.Node, what: str) -> UnsupportedModelError:
    target = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", repr(node.target))
    kind = {"call_module": "layer", "call_function": "function", "call_method": "method"}.get(node.op, node.op)
    return UnsupportedModelError(
        f"Exact linear regions support piecewise-linear layers (Linear, Conv1d/2d, ReLU, LeakyReLU, MaxPool1d/2d, "
        f"eval BatchNorm, Flatten, residual additions, concatenation); {kind} '{target}' ({what}) is not one of them."
    )


def _evaluate(node: fx.Node, modules: dict, args: tuple, kwargs: dict, state: PartitionState):
    """One graph node; returns ``(value, parent)`` where parent re-indexes the pieces (or None)."""
    if node.op == "call_module":
        module = modules[node.target]
        if isinstance(module, nn.ReLU | nn.LeakyReLU):
            slope = module.negative_slope if isinstance(module, nn.LeakyReLU) else 0.0
            return _relu(args[0], slope, str(node.target), state)
        if isinstance(module, nn.MaxPool1d | nn.MaxPool2d):
            return _max_pool(args[0], module, str(node.target), state)
        if isinstance(module, BATCHNORMS):
            if module.training or module.running_mean is None:
                raise _unsupported(node, "BatchNorm without running statistics")
            return _affine(module, args[0], node), None
        if isinstance(module, _AFFINE_MODULES):
            return _affine(module, args[0], node), None
        raise _unsupported(node, type(module).__name__)
    if node.op == "call_function":
        target = node.target
        if target in (F.relu, torch.relu):
            return _relu(args[0], 0.0, node.name, state)
        if target is F.leaky_relu:
            slope = args[1] if len(args) > 1 else kwargs.get("negative_slope", 0.01)
            return _relu(args[0], slope, node.name, state)
        if target in (operator.add, torch.add, operator.sub, operator.mul, operator.truediv, operator.neg):
            return _arithmetic(target, args, node), None
        if target is torch.cat:
            return _concatenate(args, kwargs, node), None
        if target is torch.flatten:
            start = args[1] if len(args) > 1 else kwargs.get("start_dim", 0)
            return _reshape(args[0], node, flatten_from=start), None
        if target is getattr and isinstance(args[0], Affine) and args[1] == "shape":
            return torch.Size((1, *args[0].tensor.shape[2:])), None
        if target is operator.getitem and not isinstance(args[0], Affine):
            return args[0][args[1]], None
        raise _unsupported(node, "function")
    if node.op == "call_method":
        name, value = node.target, args[0]
        if name == "size" and isinstance(value, Affine):
            size = torch.Size((1, *value.tensor.shape[2:]))
            return (size if len(args) == 1 else size[args[1]]), None
        if name in ("view", "reshape") and isinstance(value, Affine):
            shape = args[1] if len(args) == 2 and not isinstance(args[1], int) else args[1:]
            return _reshape(value, node, shape=tuple(shape)), None
        if name == "flatten" and isinstance(value, Affine):
            start = args[1] if len(args) > 1 else kwargs.get("start_dim", 0)
            return _reshape(value, node, flatten_from=start), None
        if name == "contiguous":
            return value, None
        if name == "relu":
            return _relu(value, 0.0, node.name, state)
        if name in ("add", "sub", "mul"):
            target = {"add": operator.add, "sub": operator.sub, "mul": operator.mul}[name]
            return _arithmetic(target, args, node), None
        raise _unsupported(node, "method")
    raise _unsupported(node, node.op)


def _affine(module: nn.Module, value: Affine, node: fx.Node) -> Affine:
    tensor = value.tensor
    pieces, columns = tensor.shape[:2]
    features = tensor.shape[2:]
    if type(module) is nn.Linear and len(features) == 1 and features[0] == module.in_features:
        # one matmul on the maps, the bias on the constant column only (the generic path below runs
        # the layer on every column, then subtracts the bias again from the k direction columns)
        weight = module.weight.detach().to(tensor.dtype)
        mapped = torch.matmul(tensor, weight.T)
        if module.bias is not None:
            mapped[:, -1] += module.bias.detach().to(tensor.dtype)
        return Affine(mapped)
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


def _arithmetic(target, args: tuple, node: fx.Node) -> Affine:
    if target is operator.neg:
        return Affine(-args[0].tensor)
    left, right = args[0], args[1]
    if isinstance(left, Affine) and isinstance(right, Affine):
        if target in (operator.add, torch.add):
            return Affine(left.tensor + right.tensor)
        if target is operator.sub:
            return Affine(left.tensor - right.tensor)
        raise _unsupported(node, "product of two activations")
    if isinstance(right, Affine):
        left, right = right, left
        if target is operator.sub:
            return Affine(_add_constant(-left.tensor, right))
        if target is operator.truediv:
            raise _unsupported(node, "division by an activation")
    if not isinstance(right, (int, float)):
        raise _unsupported(node, "arithmetic with a non-scalar constant")
    if target in (operator.add, torch.add):
        return Affine(_add_constant(left.tensor, right))
    if target is operator.sub:
        return Affine(_add_constant(left.tensor, -right))
    if target is operator.mul:
        return Affine(left.tensor * right)
    return Affine(left.tensor / right)


def _concatenate(args: tuple, kwargs: dict, node: fx.Node) -> Affine:
    parts = args[0]
    dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
    if not all(isinstance(part, Affine) for part in parts):
        raise _unsupported(node, "concatenation with a constant")
    features = parts[0].tensor.ndim - 2
    dim = dim + features + 1 if dim < 0 else dim
    if dim == 0:
        raise _unsupported(node, "concatenation along the batch dimension")
    return Affine(torch.cat([part.tensor for part in parts], dim=dim + 1))


def _add_constant(tensor: torch.Tensor, constant: float) -> torch.Tensor:
    tensor = tensor.clone()
    tensor[:, -1] += constant
    return tensor


def _reshape(value: Affine, node: fx.Node, shape: tuple | None = None, flatten_from: int = 0) -> Affine:
    tensor = value.tensor
    if shape is not None:
        return Affine(tensor.reshape(tensor.shape[0], tensor.shape[1], *shape[1:]))
    if flatten_from < 1:
        raise _unsupported(node, "flattening the batch dimension")
    return Affine(tensor.flatten(start_dim=flatten_from + 1))


def _coefficients(value: Affine) -> np.ndarray:
    """``(P, features, k + 1)`` NumPy view of an affine value."""
    tensor = value.tensor
    return tensor.reshape(tensor.shape[0], tensor.shape[1], -1).transpose(1, 2).detach().cpu().numpy()


def _to_affine(coefficients: np.ndarray, like: torch.Tensor, features: tuple) -> Affine:
    tensor = torch.from_numpy(np.ascontiguousarray(coefficients.transpose(0, 2, 1)))
    return Affine(tensor.to(like.device).reshape(coefficients.shape[0], coefficients.shape[2], *features))


def _relu(value: Affine, slope: float, name: str, state: PartitionState):
    """Cut the pieces by every unit's zero set; on each piece the (leaky) ReLU is then diagonal."""
    tensor = value.tensor
    count, width = tensor.shape[:2]
    k = width - 1
    maps = tensor.reshape(count, width, -1).detach().cpu()  # (P, k + 1, units)
    units = maps.shape[2]
    # pad each polygon with copies of its first vertex so min/max over vertices need no mask
    padded = state.pieces.vertices.copy()
    invalid = np.arange(padded.shape[1])[None, :] >= state.pieces.counts[:, None]
    padded[invalid] = np.broadcast_to(padded[:, :1], padded.shape)[invalid]
    vertices = torch.from_numpy(padded)
    homogeneous = torch.cat([vertices, torch.ones(*vertices.shape[:2], 1, dtype=vertices.dtype)], dim=2)
    crosses = torch.zeros((count, units), dtype=torch.bool)
    for start in range(0, count, 1024):
        block = slice(start, start + 1024)
        values = torch.bmm(homogeneous[block], maps[block])  # (p, vertices, units)
        margin = state.tol * maps[block, :k].square().sum(dim=1).sqrt()
        crosses[block] = (values.amax(dim=1) > margin) & (values.amin(dim=1) < -margin)
    coefficients = maps.numpy()
    # each piece is cut by the units crossing its parent, in increasing unit order; pieces of
    # different parents are independent, so round r applies every piece's next cut at once (a
    # piece's cursor counts its cuts; a cut's two parts both go on with the next unit)
    cut_parent, cut_unit = np.nonzero(crosses.numpy())  # sorted by parent, then by unit
    first_cut = np.searchsorted(cut_parent, np.arange(count))
    cuts = np.bincount(cut_parent, minlength=count)
    buffer = geometry.PieceBuffer(state.pieces)
    while True:
        size = buffer.size
        parent, cursor = buffer.parent[:size], buffer.cursor[:size]
        slots = np.flatnonzero(buffer.alive[:size] & (cursor < cuts[parent]))
        if len(slots) == 0:
            break
        unit = cut_unit[first_cut[parent[slots]] + cursor[slots]]
        buffer.cursor[slots] += 1
        buffer.split(slots, coefficients[parent[slots], :, unit], state.tol)
        if len(buffer) > state.max_regions:
            state.regroup(*buffer.finish())
    pieces, parent = buffer.finish()
    state.regroup(pieces, parent)
    mapped = maps.index_select(0, torch.from_numpy(parent))
    points = torch.from_numpy(geometry.interior_points(pieces))
    active = torch.empty((len(mapped), units), dtype=torch.bool)
    # (Σ_j x_j A_j) + b at each piece's interior point, then the (leaky) ReLU's slope on each unit, in
    # blocks of pieces through two small reused buffers: at ~40k pieces x 256 units a fresh float64
    # (P, units) temporary is ~80 MB of newly mapped pages, and such page faults were a third of the
    # run's CPU time
    block = min(len(mapped), _CHUNK)
    pre_activation = torch.empty((block, units), dtype=mapped.dtype)
    term = torch.empty_like(pre_activation)
    for start in range(0, len(mapped), _CHUNK):
        rows = slice(start, start + _CHUNK)
        size = len(mapped[rows])
        pre, extra = pre_activation[:size], term[:size]
        torch.mul(points[rows, 0, None], mapped[rows, 0], out=pre)
        for j in range(1, k):
            pre.add_(torch.mul(points[rows, j, None], mapped[rows, j], out=extra))
        pre.add_(mapped[rows, k])
        torch.gt(pre, 0, out=active[rows])
        factor = extra.copy_(active[rows]).mul_(1.0 - slope).add_(slope)  # 1 or the slope, in float64
        mapped[rows].mul_(factor[:, None])
    state.patterns.append(active.numpy().astype(np.int8))
    kind = "leaky_relu" if slope else "relu"
    state.layers.append({"layer": name, "kind": kind, "units": units, "regions": len(pieces)})
    return Affine(_reshaped(mapped, tensor)), parent


def _reshaped(mapped: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return mapped.to(like.device).reshape(mapped.shape[0], *like.shape[1:])


def _max_pool(value: Affine, module: nn.Module, name: str, state: PartitionState):
    """Cut the pieces into the cells where each window's argmax is fixed; the pool is then a selection."""
    if module.ceil_mode or module.return_indices:
        raise UnsupportedModelError(f"Max pooling '{name}' with ceil_mode or return_indices is not supported.")
    features = tuple(value.tensor.shape[2:])
    one_d = len(features) == 2
    channels, height, width = (features[0], 1, features[1]) if one_d else features

    def pair(v, fill=1):
        return (fill, v if isinstance(v, int) else v[0]) if one_d else nn.modules.utils._pair(v)

    kernel, stride = pair(module.kernel_size), pair(module.stride or module.kernel_size)
    padding, dilation = pair(module.padding, 0), pair(module.dilation)
    index = torch.arange(1, channels * height * width + 1, dtype=torch.float64).reshape(1, channels, height, width)
    windows = F.unfold(index, kernel, dilation=dilation, padding=padding, stride=stride)
    out_h = (height + 2 * padding[0] - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
    out_w = (width + 2 * padding[1] - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1
    candidates = windows.reshape(channels, kernel[0] * kernel[1], out_h * out_w).permute(0, 2, 1)
    candidates = candidates.reshape(-1, kernel[0] * kernel[1]).long().numpy() - 1  # -1 marks padding
    coefficients = _coefficients(value)
    pieces, parent = state.pieces, np.arange(coefficients.shape[0])
    winners = np.zeros((coefficients.shape[0], len(candidates)), dtype=np.int64)
    chosen = np.zeros((coefficients.shape[0], len(candidates)), dtype=np.int64)
    for window, row in enumerate(candidates):
        row = row[row >= 0]
        if len(row) == 1:
            chosen[:, window] = row[0]
            continue
        # on a parent piece where one candidate is the largest everywhere, its descendants need no cut
        settled, first = geometry.argmax_settled(state.pieces, coefficients[:, row], state.tol)
        winners[:, window] = first[parent]
        chosen[:, window] = row[first[parent]]
        open_ = np.flatnonzero(~settled[parent])
        if len(open_) == 0:
            continue
        functions = coefficients[parent[open_][:, None], row[None, :]]
        cells, source, winner = geometry.partition_by_argmax(pieces.take(open_), functions, state.tol)
        rest = np.flatnonzero(settled[parent])
        pieces = geometry.Pieces.concatenate([pieces.take(rest), cells])
        parent = np.concatenate([parent[rest], parent[open_][source]])
        winners = np.concatenate([winners[rest], winners[open_][source]])
        chosen = np.concatenate([chosen[rest], chosen[open_][source]])
        winners[len(rest) :, window] = winner
        chosen[len(rest) :, window] = row[winner]
        if len(pieces) > state.max_regions:
            state.regroup(pieces, parent)
    state.regroup(pieces, parent)
    mapped = coefficients[parent[:, None], chosen]
    state.patterns.append(winners.astype(np.int8 if candidates.shape[1] <= 127 else np.int16))
    state.layers.append({"layer": name, "kind": "max_pool", "units": len(candidates), "regions": len(pieces)})
    shape = (channels, out_w) if one_d else (channels, out_h, out_w)
    return _to_affine(mapped, value.tensor, shape), parent
