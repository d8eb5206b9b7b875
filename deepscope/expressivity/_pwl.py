"""Walk a piecewise-linear network's torch.fx graph, carrying affine maps over a partition.

Each value in the graph is held, for every current piece of the input domain, as its affine map
in the domain's ``k`` coordinates: a tensor ``(P, k + 1, *features)`` whose first ``k`` columns
are the linear part and whose last column is the constant. Affine layers (Linear, Conv, eval
BatchNorm, pooling by averages, Flatten, Dropout in eval, ...) map these columns directly; at a
ReLU, LeakyReLU or max-pool the pieces are cut (see :mod:`._geometry`) so that the layer is affine
on every piece, and every live value is re-indexed to the new pieces. The values live in
:mod:`._pwl_values`, the affine layers in :mod:`._pwl_affine`, the cuts in :mod:`._pwl_relu` and
:mod:`._pwl_maxpool`.
"""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import fx, nn

from deepscope._batchnorm import BATCHNORMS
from deepscope.errors import UnsupportedModelError
from deepscope.expressivity._pwl_affine import AFFINE_MODULES, affine, arithmetic, concatenate, reshape
from deepscope.expressivity._pwl_maxpool import max_pool
from deepscope.expressivity._pwl_relu import relu
from deepscope.expressivity._pwl_values import Affine, PartitionState, unsupported

__all__ = ["PartitionState", "Affine", "propagate", "trace"]


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
                        env[key] = value.take(torch.as_tensor(parent))
            env[node] = result
        for used in node.all_input_nodes:
            if last_use.get(used) == position:
                env.pop(used, None)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(regions=len(state.pieces))
    raise UnsupportedModelError("The traced graph has no output node.")


def _evaluate(node: fx.Node, modules: dict, args: tuple, kwargs: dict, state: PartitionState):
    """One graph node; returns ``(value, parent)`` where parent re-indexes the pieces (or None)."""
    if node.op == "call_module":
        module = modules[node.target]
        if isinstance(module, nn.ReLU | nn.LeakyReLU):
            slope = module.negative_slope if isinstance(module, nn.LeakyReLU) else 0.0
            return relu(args[0], slope, str(node.target), state)
        if isinstance(module, nn.MaxPool1d | nn.MaxPool2d):
            return max_pool(args[0], module, str(node.target), state)
        if isinstance(module, BATCHNORMS):
            if module.training or module.running_mean is None:
                raise unsupported(node, "BatchNorm without running statistics")
            return affine(module, args[0], node), None
        if isinstance(module, AFFINE_MODULES):
            return affine(module, args[0], node), None
        raise unsupported(node, type(module).__name__)
    if node.op == "call_function":
        target = node.target
        if target in (F.relu, torch.relu):
            return relu(args[0], 0.0, node.name, state)
        if target is F.leaky_relu:
            slope = args[1] if len(args) > 1 else kwargs.get("negative_slope", 0.01)
            return relu(args[0], slope, node.name, state)
        if target in (operator.add, torch.add, operator.sub, operator.mul, operator.truediv, operator.neg):
            return arithmetic(target, args, node), None
        if target is torch.cat:
            return concatenate(args, kwargs, node), None
        if target is torch.flatten:
            start = args[1] if len(args) > 1 else kwargs.get("start_dim", 0)
            return reshape(args[0], node, flatten_from=start), None
        if target is getattr and isinstance(args[0], Affine) and args[1] == "shape":
            return torch.Size((1, *args[0].shape[2:])), None
        if target is operator.getitem and not isinstance(args[0], Affine):
            return args[0][args[1]], None
        raise unsupported(node, "function")
    if node.op == "call_method":
        name, value = node.target, args[0]
        if name == "size" and isinstance(value, Affine):
            size = torch.Size((1, *value.shape[2:]))
            return (size if len(args) == 1 else size[args[1]]), None
        if name in ("view", "reshape") and isinstance(value, Affine):
            shape = args[1] if len(args) == 2 and not isinstance(args[1], int) else args[1:]
            return reshape(value, node, shape=tuple(shape)), None
        if name == "flatten" and isinstance(value, Affine):
            start = args[1] if len(args) > 1 else kwargs.get("start_dim", 0)
            return reshape(value, node, flatten_from=start), None
        if name == "contiguous":
            return value, None
        if name == "relu":
            return relu(value, 0.0, node.name, state)
        if name in ("add", "sub", "mul"):
            target = {"add": operator.add, "sub": operator.sub, "mul": operator.mul}[name]
            return arithmetic(target, args, node), None
        raise unsupported(node, "method")
    raise unsupported(node, node.op)
