"""Which steps of a traced graph DeepLIFT's multipliers are exact for, and which it must refuse.

DeepLIFT passes multipliers through a step like gradients only when the step is affine in the
input (a sum, a reshape, a layer with fixed weights); element-wise non-linearities (activations,
``exp``, ``log``) get the rescale rule, max pooling and global max (``amax``, ``max(dim)``,
adaptive max pooling) Captum's routing rule, softmax / log-softmax / logsumexp their exact
decompositions and a product of two input-dependent tensors the midpoint (Shapley) product rule
(see :mod:`deepscope.attribution._deeplift_rules`). Anything else would be propagated as if it were
affine and break summation-to-delta silently: a division *by* an input-dependent tensor (``c / h``
is not affine in ``h``), an index computed from the input, batch statistics (BatchNorm in train
mode or without running statistics, which also mix input and reference rows), random dropout, a
reduction over the batch axis, or an unknown function.

Only the attributed input (the first placeholder) and what is computed from it are
input-dependent: extra model arguments (control tracks, masks) are held fixed, so a ``log`` of a
control track is a constant, not a refused step.

Only steps the model's output depends on are checked: a dead branch is never refused. When the
model returns several tensors (a tuple or a dict, read through ``output_fn``) the selected output
is known only when it is computed, so unsupported steps there are wrapped in :class:`RefuseStep`,
whose backward pass raises: the refusal happens exactly when the selected output depends on them.

Example:
    >>> import torch
    >>> class Reciprocal(torch.nn.Module):
    ...     def forward(self, x):
    ...         return 1.0 / (torch.sigmoid(x) + 1.0)
    >>> [node.name for node in unsupported_steps(torch.fx.symbolic_trace(Reciprocal()))]
    ['truediv']
"""

from __future__ import annotations

import operator
from typing import Any

import torch
import torch.fx as fx
from torch import nn
from torch.nn import functional as F

from deepscope._batchnorm import AFFINE_LAYERS, BATCHNORMS
from deepscope._outputs import ancestors
from deepscope.attribution._elementwise import ACTIVATION_FUNCTIONS, ACTIVATION_METHODS, ACTIVATION_MODULES
from deepscope.errors import UnsupportedModelError

__all__ = [
    "ELEMENTWISE_FUNCTIONS",
    "LOGSUMEXP_FUNCTIONS",
    "LOG_SOFTMAX_FUNCTIONS",
    "MAX_FUNCTIONS",
    "MAX_METHODS",
    "PRODUCTS",
    "SOFTMAX_FUNCTIONS",
    "dependent_nodes",
    "ELEMENTWISE_METHODS",
    "ELEMENTWISE_MODULES",
    "MAXPOOL_FUNCTIONS",
    "MAXPOOL_MODULES",
    "RefuseStep",
    "refusal",
    "unsupported_steps",
]

# element-wise: the shared activations plus those only DeepLIFT's rescale rule handles (LRP would not)
ELEMENTWISE_MODULES = (
    *ACTIVATION_MODULES, nn.PReLU, nn.RReLU, nn.LogSigmoid, nn.Softsign, nn.Softshrink, nn.Hardshrink, nn.Tanhshrink,
)  # fmt: skip
ELEMENTWISE_FUNCTIONS = ACTIVATION_FUNCTIONS | {
    torch.exp, torch.log, torch.log1p, torch.expm1, torch.abs, torch.square, F.logsigmoid, F.softsign,
}  # fmt: skip
ELEMENTWISE_METHODS = ACTIVATION_METHODS | {"exp", "log", "log1p", "expm1", "abs", "square"}
# max selections: the change of the output is routed to the winning inputs (Captum's max-pool rule)
MAXPOOL_MODULES = (
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
)  # fmt: skip
MAXPOOL_FUNCTIONS = {
    F.max_pool1d, F.max_pool2d, F.max_pool3d, F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d,
}  # fmt: skip
MAX_FUNCTIONS = {torch.amax, torch.max}  # with a dim: a global max over an axis
MAX_METHODS = {"amax", "max"}
SOFTMAX_MODULES = (nn.Softmax,)
SOFTMAX_FUNCTIONS = {F.softmax, torch.softmax, "softmax"}
LOG_SOFTMAX_MODULES = (nn.LogSoftmax,)
LOG_SOFTMAX_FUNCTIONS = {F.log_softmax, torch.log_softmax, "log_softmax"}
LOGSUMEXP_FUNCTIONS = {torch.logsumexp, "logsumexp"}
# bilinear in their two operands: the midpoint product rule when both depend on the input
PRODUCTS = {operator.mul, torch.mul, "mul", operator.matmul, torch.matmul, "matmul", torch.bmm, "bmm"}
_NORMALISERS = SOFTMAX_FUNCTIONS | LOG_SOFTMAX_FUNCTIONS | LOGSUMEXP_FUNCTIONS
_BATCHNORMS = BATCHNORMS  # the one list (deepscope/_batchnorm.py)
_DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)
# affine or purely structural steps: DeepLIFT's multipliers pass through them like gradients
_AFFINE_MODULES = (
    *AFFINE_LAYERS, nn.ConvTranspose1d, nn.ConvTranspose2d,
    *_BATCHNORMS, nn.Flatten, nn.Unflatten, nn.Identity, *_DROPOUTS,
    nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.ZeroPad1d, nn.ZeroPad2d, nn.ConstantPad1d, nn.ConstantPad2d,
)  # fmt: skip
_AFFINE_FUNCTIONS = {
    operator.add, operator.sub, operator.neg, operator.pos, operator.getitem, operator.mul, operator.truediv,
    torch.add, torch.sub, torch.mul, torch.div, torch.cat, torch.stack, torch.flatten, torch.reshape,
    torch.permute, torch.transpose, torch.squeeze, torch.unsqueeze, torch.sum, torch.mean, torch.matmul,
    torch.chunk, F.linear, F.conv1d, F.conv2d, F.conv3d, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
    F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.dropout, F.batch_norm, F.pad, getattr,
}  # fmt: skip
_AFFINE_METHODS = {
    "view", "reshape", "flatten", "permute", "transpose", "squeeze", "unsqueeze", "contiguous", "size", "sum",
    "mean", "add", "sub", "mul", "div", "expand", "expand_as", "repeat", "chunk", "split", "dim", "__getitem__",
    "view_as", "reshape_as", "t", "neg",
}  # fmt: skip
# linear in all their tensor arguments together: several input-dependent operands are fine
_JOINTLY_LINEAR = {operator.add, operator.sub, torch.add, torch.sub, torch.cat, torch.stack, "add", "sub"}
# the second tensor only gives a shape
_SHAPE_FROM_SECOND = {"expand_as", "view_as", "reshape_as"}
_DIVISIONS = {operator.truediv, torch.div, "div"}
_SHAPE_METHODS = {"size", "dim"}
_SHAPE_ATTRIBUTES = ("shape", "ndim", "dtype", "device")


class RefuseStep(torch.autograd.Function):
    """Identity forward; the backward pass raises UnsupportedModelError naming the step.

    Autograd calls it only when the differentiated output depends on the step.
    """

    @staticmethod
    def forward(ctx, z: torch.Tensor, message: str) -> torch.Tensor:
        ctx.message = message
        return z.clone()

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        raise UnsupportedModelError(ctx.message)


def refusal(name: str, what: str) -> str:
    """The message for an unsupported step."""
    return (
        f"deeplift: step '{name}' ({what}) is not affine and has no DeepLIFT rule here, so its multipliers "
        "would be wrong; supported are affine layers, sums, element-wise non-linearities (modules or "
        "functions), max pooling and global max, softmax, log-softmax, logsumexp and products of two tensors."
    )


def _is_shape(node: fx.Node, shapes: set[fx.Node]) -> bool:
    """``x.size()``, ``x.dim()``, ``x.shape`` (and arithmetic or indexing on them): values, not activations."""
    if node.op == "call_method" and node.target in _SHAPE_METHODS:
        return True
    if node.op == "call_function" and node.target is getattr and node.args[1] in _SHAPE_ATTRIBUTES:
        return True
    tensors = node.all_input_nodes
    return node.op == "call_function" and bool(tensors) and all(n in shapes for n in tensors)


def _dependent_count(argument: Any, dependent: set[fx.Node]) -> int:
    if isinstance(argument, fx.Node):
        return int(argument in dependent)
    if isinstance(argument, (list, tuple)):
        return sum(_dependent_count(a, dependent) for a in argument)
    if isinstance(argument, dict):
        return sum(_dependent_count(a, dependent) for a in argument.values())
    return 0


def _live(graph_module: fx.GraphModule) -> set[fx.Node]:
    """Nodes the graph's output depends on (its ancestors)."""
    output = next(node for node in graph_module.graph.nodes if node.op == "output")
    return ancestors(output) - {output}


def _argument(node: fx.Node, position: int, keyword: str, default: Any = None) -> Any:
    if len(node.args) > position:
        return node.args[position]
    return node.kwargs.get(keyword, default)


def reduced_dims(node: fx.Node, position: int = 1, keyword: str = "dim") -> Any:
    """The ``dim`` argument of a reduction/normalisation call (None when absent)."""
    return _argument(node, position, keyword)


def _touches_batch(dim: Any) -> bool:
    """True when ``dim`` is absent or names axis 0 (which mixes the examples and their references)."""
    dims = dim if isinstance(dim, (tuple, list)) else (dim,)
    return dim is None or any(not isinstance(d, int) or d == 0 for d in dims)


def _module_problem(module: nn.Module, count: int, leaf_types: tuple[type, ...] = ()) -> str | None:
    """Why a module call is unsupported, or None."""
    what = type(module).__name__
    if leaf_types and isinstance(module, leaf_types):
        return f"{what} called on two input-dependent tensors" if count > 1 else None
    if isinstance(module, SOFTMAX_MODULES + LOG_SOFTMAX_MODULES) and _touches_batch(module.dim):
        return f"{what} over the batch axis (dim={module.dim})"
    if not isinstance(
        module, ELEMENTWISE_MODULES + MAXPOOL_MODULES + _AFFINE_MODULES + SOFTMAX_MODULES + LOG_SOFTMAX_MODULES
    ):
        return what
    if getattr(module, "return_indices", False):
        return f"{what} with return_indices"
    if count > 1:
        return f"{what} called on two input-dependent tensors"
    if isinstance(module, _BATCHNORMS) and (module.training or module.running_mean is None):
        return f"{what} using batch statistics (train mode or no running statistics)"
    if isinstance(module, _DROPOUTS) and module.training and module.p > 0:
        return f"{what} in train mode"
    return None


def _call_problem(node: fx.Node, count: int, dependent: set[fx.Node]) -> str | None:
    """Why a function or method call is unsupported, or None."""
    target = node.target
    if node.op == "call_function":
        what = getattr(target, "__name__", str(target))
        known = ELEMENTWISE_FUNCTIONS | MAXPOOL_FUNCTIONS | _AFFINE_FUNCTIONS | MAX_FUNCTIONS | _NORMALISERS | PRODUCTS
    else:
        what = f".{target}()"
        known = ELEMENTWISE_METHODS | _AFFINE_METHODS | MAX_METHODS | _NORMALISERS | PRODUCTS
    if target not in known:
        return what
    if target in MAX_FUNCTIONS | MAX_METHODS:
        other = _argument(node, 1, "dim")
        if isinstance(other, fx.Node):
            return f"{what} of two tensors (an element-wise maximum)"
        if _touches_batch(other):
            return f"{what} over the batch axis or over all axes (give a dim >= 1)"
    if target in _NORMALISERS and _touches_batch(reduced_dims(node)):
        return f"{what} over the batch axis or without a dim"
    if target in PRODUCTS and count == 2:
        return None  # the midpoint product rule
    if target in _DIVISIONS and _dependent_count(_argument(node, 1, "other"), dependent):
        return f"{what}: a division by an input-dependent tensor"
    if target in _SHAPE_FROM_SECOND:
        count = _dependent_count(node.args[0], dependent)
    if count > 1 and target not in _JOINTLY_LINEAR:
        return f"{what} of two input-dependent tensors"
    if target is F.batch_norm and (_argument(node, 5, "training", False) or _argument(node, 1, "running_mean") is None):
        return f"{what} using batch statistics"
    if target is F.dropout and _argument(node, 2, "training", True) and _argument(node, 1, "p", 0.5) > 0:
        return f"{what} in train mode"
    return None


def dependent_nodes(graph_module: fx.GraphModule, n_inputs: int = 1) -> set[fx.Node]:
    """The nodes computed from the first ``n_inputs`` placeholders (the attributed inputs).

    Later placeholders (extra model arguments, held fixed) and shape arithmetic are not dependent.
    """
    dependent: set[fx.Node] = set()
    shapes: set[fx.Node] = set()
    placeholders = 0
    for node in graph_module.graph.nodes:
        if node.op == "placeholder":
            if placeholders < n_inputs:
                dependent.add(node)
            placeholders += 1
            continue
        if node.op in ("output", "get_attr"):
            continue
        if _is_shape(node, shapes):
            shapes.add(node)
            continue
        if _dependent_count(node.args, dependent) + _dependent_count(node.kwargs, dependent):
            dependent.add(node)
    return dependent


def unsupported_steps(
    graph_module: fx.GraphModule, n_inputs: int = 1, leaf_types: tuple[type, ...] = ()
) -> dict[fx.Node, str]:
    """The steps the output depends on whose DeepLIFT multipliers would be wrong, with the reason.

    ``leaf_types``: module types traced as single calls and given the element-wise rescale rule
    (tangermeme's ``additional_nonlinear_ops={T: _nonlinear}``).
    """
    live = _live(graph_module)
    dependent = dependent_nodes(graph_module, n_inputs)
    problems: dict[fx.Node, str] = {}
    for node in graph_module.graph.nodes:
        if node not in dependent or node.op == "placeholder" or node not in live:
            continue
        count = _dependent_count(node.args, dependent) + _dependent_count(node.kwargs, dependent)
        if node.op == "call_module":
            problem = _module_problem(graph_module.get_submodule(node.target), count, leaf_types)
        else:
            problem = _call_problem(node, count, dependent)
        if problem is not None:
            problems[node] = problem
    return problems
