"""Running a traced model for DeepLIFT: the inputs once, their references with the rules of
:mod:`deepscope.attribution._deeplift_rules` in place of the non-linear steps (no module hooks).

:class:`PairedInterpreter` decides per step which rule applies (element-wise rescale, max routing,
softmax / log-softmax / logsumexp, products of two input-dependent tensors), keeps the input run's
activations at those steps, and feeds them to the rules in the reference run.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.fx as fx
from torch import nn
from torch.nn import functional as F

from deepscope.attribution._deeplift_graph import (
    ELEMENTWISE_FUNCTIONS,
    ELEMENTWISE_METHODS,
    ELEMENTWISE_MODULES,
    LOG_SOFTMAX_FUNCTIONS,
    LOG_SOFTMAX_MODULES,
    LOGSUMEXP_FUNCTIONS,
    MAX_FUNCTIONS,
    MAX_METHODS,
    MAXPOOL_FUNCTIONS,
    MAXPOOL_MODULES,
    PRODUCTS,
    SOFTMAX_FUNCTIONS,
    SOFTMAX_MODULES,
    RefuseStep,
    dependent_nodes,
    reduced_dims,
    refusal,
)
from deepscope.attribution._deeplift_rules import EXACT, MaxRule, Normaliser, PoolRule, Product, Rescale
from deepscope.attribution._fast_conv import (
    batch_norm_affine,
    conv1d,
    is_foldable_batch_norm,
    is_plain_conv1d,
    max_pool1d_with_indices,
    output_window,
)
from deepscope.errors import UnsupportedModelError

__all__ = ["PairedInterpreter"]


def _max_values(function: Callable[..., Any], dim: Any, keepdim: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    if function is torch.amax or function == "amax":
        return lambda z: torch.amax(z, dim, keepdim)
    return lambda z: torch.max(z, dim, keepdim).values


_PIECEWISE_MODULES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Hardtanh, nn.PReLU, nn.RReLU)
_PIECEWISE_FUNCTIONS = {F.relu, torch.relu, F.relu6, F.leaky_relu, F.hardtanh, "relu"}


def _piecewise_linear(n: fx.Node, function: Any) -> bool:
    if n.op == "call_module":
        return isinstance(function, _PIECEWISE_MODULES)
    return n.target in _PIECEWISE_FUNCTIONS


_POOLS = {
    nn.MaxPool1d: F.max_pool1d, nn.MaxPool2d: F.max_pool2d, nn.MaxPool3d: F.max_pool3d,
    nn.AdaptiveMaxPool1d: F.adaptive_max_pool1d, nn.AdaptiveMaxPool2d: F.adaptive_max_pool2d,
    nn.AdaptiveMaxPool3d: F.adaptive_max_pool3d,
}  # fmt: skip


def _with_indices(n: fx.Node, root: nn.Module, args: tuple, kwargs: dict) -> Callable | None:
    """The pooling step as ``z -> (pooled, indices)`` (flat per channel), or None for another max."""
    if n.op == "call_module":
        module = root.get_submodule(n.target)
        pool = _POOLS.get(type(module))
        if pool is None:
            return None
        if "adaptive" in pool.__name__:
            return lambda z: pool(z, module.output_size, return_indices=True)
        options = (module.kernel_size, module.stride, module.padding, module.dilation)
        if pool is F.max_pool1d:
            return lambda z: max_pool1d_with_indices(z, *options, ceil_mode=module.ceil_mode)
        return lambda z: pool(z, *options, ceil_mode=module.ceil_mode, return_indices=True)
    if (
        n.op == "call_function"
        and n.target in _POOLS.values()
        and len(args) <= 2 + 3 * ("adaptive" not in n.target.__name__)
    ):
        rest = args[1:]
        if n.target is F.max_pool1d:
            options = {k: v for k, v in kwargs.items() if k != "return_indices"}
            return lambda z: max_pool1d_with_indices(z, *rest, **options)
        options = {**kwargs, "return_indices": True}
        return lambda z: n.target(z, *rest, **options)
    return None


_UNKNOWN = object()


def _mentions(argument: Any, value: object) -> bool:
    if argument is value:
        return True
    if isinstance(argument, (tuple, list)):
        return any(_mentions(a, value) for a in argument)
    if isinstance(argument, slice):
        return any(_mentions(a, value) for a in (argument.start, argument.stop, argument.step))
    return False


class PairedInterpreter(fx.Interpreter):
    """Runs a traced model on the inputs (:meth:`run_inputs`), then on their references (:meth:`run_references`).

    Args:
        graph_module: from :func:`deepscope.attribution._trace.trace_model`.
        eps: the rescale rule's threshold on |Δz|.
        refused: steps to wrap in :class:`RefuseStep` (they raise if the selected output uses them).
        n_inputs: leading placeholders that are attributed (the rest are fixed model arguments).
        leaf_types: module types given the element-wise rescale rule as a whole.
    """

    def __init__(
        self,
        graph_module: fx.GraphModule,
        eps: float,
        refused: dict[fx.Node, str],
        n_inputs: int = 1,
        leaf_types: Sequence[type] = (),
    ) -> None:
        super().__init__(graph_module)
        self.eps, self.refused, self.leaf_types = eps, refused, tuple(leaf_types)
        dependent = dependent_nodes(graph_module, n_inputs)
        self.rules: dict[fx.Node, str] = {}
        for node in graph_module.graph.nodes:
            if node in dependent:
                kind = self._kind(node, dependent)
                if kind is not None:
                    self.rules[node] = kind
        self.saved: dict[fx.Node, Any] = {}
        self.reference_run = False
        # 1-D convolutions (affine: no rule) run by deepscope.attribution._fast_conv: the ones whose only use is
        # a slice of their positions on the kept window, the ones whose only use is an eval-mode BatchNorm1d
        # with it folded in (that slice or normalisation then passes the value through)
        self.convolutions: dict[fx.Node, nn.Module] = {}
        self.sliced_by: dict[fx.Node, fx.Node] = {}
        self.normalised_by: dict[fx.Node, tuple[fx.Node, nn.Module]] = {}
        for node in graph_module.graph.nodes:
            if node.op != "call_module" or node in self.rules or node in refused:
                continue
            module = graph_module.get_submodule(node.target)
            if not is_plain_conv1d(module):
                continue
            self.convolutions[node] = module
            users = list(node.users)
            user = users[0] if len(users) == 1 and users[0] not in refused and users[0] not in self.rules else None
            if user is None or user.args[:1] != (node,) or node in user.args[1:] or user.kwargs:
                continue
            if user.op == "call_function" and user.target is operator.getitem:
                self.sliced_by[node] = user
            elif user.op == "call_module" and len(user.args) == 1:
                normalisation = graph_module.get_submodule(user.target)
                if is_foldable_batch_norm(normalisation):
                    self.normalised_by[node] = (user, normalisation)
        self.passed: set[fx.Node] = set()

    def _kind(self, node: fx.Node, dependent: set[fx.Node]) -> str | None:
        target = node.target
        if node.op == "call_module":
            module = self.module.get_submodule(target)
            if isinstance(module, ELEMENTWISE_MODULES) or (self.leaf_types and isinstance(module, self.leaf_types)):
                return "rescale"
            if isinstance(module, MAXPOOL_MODULES):
                return "max"
            if isinstance(module, SOFTMAX_MODULES + LOG_SOFTMAX_MODULES):
                return "normaliser"
            return None
        if node.op not in ("call_function", "call_method"):
            return None
        if target in (ELEMENTWISE_FUNCTIONS if node.op == "call_function" else ELEMENTWISE_METHODS):
            return "rescale"
        if (
            target in MAXPOOL_FUNCTIONS
            or target in MAX_FUNCTIONS
            or (node.op == "call_method" and target in MAX_METHODS)
        ):
            return "max"
        if target in SOFTMAX_FUNCTIONS | LOG_SOFTMAX_FUNCTIONS | LOGSUMEXP_FUNCTIONS:
            return "normaliser"
        if target in PRODUCTS:
            operands = [a for a in node.args[:2] if isinstance(a, fx.Node) and a in dependent]
            return "product" if len(operands) == 2 else None
        return None

    # ------------------------------------------------------------------------------------------

    def run_inputs(self, x: torch.Tensor, *args: Any) -> Any:
        """The forward pass on the inputs (B rows); keeps what the rules need."""
        self.reference_run = False
        self.saved = {}
        with torch.no_grad():
            return self.run(x, *args)

    def run_references(self, references: torch.Tensor, *args: Any) -> Any:
        """The forward pass on the references (B·n rows, example-major), with the rules' backward passes.

        ``args`` are the extra model arguments for the references' rows (repeated per reference).
        """
        self.reference_run = True
        return self.run(references, *args)

    def run(self, *args: Any, **kwargs: Any) -> Any:
        self.passed = set()
        return super().run(*args, **kwargs)

    def run_node(self, n: fx.Node) -> Any:
        if n in self.convolutions or n in self.passed:
            value = self._convolution(n)
        elif n not in self.rules:
            value = super().run_node(n)
        elif not self.reference_run:
            args, kwargs = self.fetch_args_kwargs_from_env(n)
            # copies: an in-place step (or a later one) must not overwrite what the rule reads
            operands = [a.clone() if isinstance(a, torch.Tensor) else a for a in args[:2]]
            value = getattr(self, n.op)(n.target, args, kwargs)
            kept = value.clone() if isinstance(value, torch.Tensor) else value
            self.saved[n] = (operands, kept)
        else:
            value = self._rule(n)
        if self.reference_run and n in self.refused:
            if not isinstance(value, torch.Tensor) or not value.is_floating_point():
                raise UnsupportedModelError(refusal(n.name, self.refused[n]))
            return RefuseStep.apply(value, refusal(n.name, self.refused[n]))
        return value

    def _convolution(self, n: fx.Node) -> Any:
        """A 1-D convolution on the window its slice keeps or with its normalisation folded in (see
        :mod:`._fast_conv`), or that slice or normalisation: the value."""
        with self._set_current_node(n):
            args, kwargs = self.fetch_args_kwargs_from_env(n)
        if n in self.passed:
            return args[0]
        module = self.convolutions[n]
        if kwargs or len(args) != 1 or not isinstance(args[0], torch.Tensor):
            return module(*args, **kwargs)
        z, window, user = args[0], None, self.sliced_by.get(n)
        if user is not None:
            index = fx.node.map_arg(user.args[1], lambda node: self.env.get(node, _UNKNOWN))
            if not _mentions(index, _UNKNOWN):  # the slice bounds known already (computed before the convolution)
                window = output_window(index, module, z)
        if window is not None:
            self.passed.add(user)
        affine = None
        if n in self.normalised_by and z.dim() == 3:  # batched: BatchNorm1d normalises the channels
            user, normalisation = self.normalised_by[n]
            affine = batch_norm_affine(normalisation)
            self.passed.add(user)
        return conv1d(module, z, window, affine)

    def _rule(self, n: fx.Node) -> Any:
        args, kwargs = self.fetch_args_kwargs_from_env(n)
        (operands_x, value_x), kind, z = self.saved[n], self.rules[n], args[0]
        if kind == "product":
            operation = {"mul": torch.mul, "matmul": torch.matmul, "bmm": torch.bmm}.get(n.target, n.target)
            return Product.apply(z, args[1], operands_x[0], operands_x[1], operation)
        function = self._function(n, args, kwargs)
        if kind == "rescale":
            elementwise = not (n.op == "call_module" and isinstance(function, self.leaf_types))
            eps = EXACT if _piecewise_linear(n, function) else self.eps
            return Rescale.apply(z, operands_x[0], value_x, function, eps, elementwise)
        if kind == "max":
            if n.target in (torch.max, "max"):
                dim, keepdim = reduced_dims(n), bool(n.args[2] if len(n.args) > 2 else kwargs.get("keepdim", False))
                values = MaxRule.apply(z, operands_x[0], value_x.values, _max_values(n.target, dim, keepdim), self.eps)
                return torch.return_types.max((values, z.detach().max(dim, keepdim).indices))
            pool = _with_indices(n, self.module, args, kwargs)
            if pool is not None:
                return PoolRule.apply(z, operands_x[0], value_x, pool)
            return MaxRule.apply(z, operands_x[0], value_x, function, self.eps)
        return self._normaliser(n, z, operands_x[0], kwargs)

    def _normaliser(self, n: fx.Node, z: torch.Tensor, z_x: torch.Tensor, kwargs: dict) -> torch.Tensor:
        if n.op == "call_module":
            module = self.module.get_submodule(n.target)
            kind = "softmax" if isinstance(module, SOFTMAX_MODULES) else "log_softmax"
            return Normaliser.apply(z, z_x, kind, module.dim, False)
        kind = (
            "softmax"
            if n.target in SOFTMAX_FUNCTIONS
            else "log_softmax"
            if n.target in LOG_SOFTMAX_FUNCTIONS
            else "logsumexp"
        )
        keepdim = bool(n.args[2] if len(n.args) > 2 else kwargs.get("keepdim", False))
        dim = reduced_dims(n)
        dim = tuple(dim) if isinstance(dim, (list, tuple)) else dim
        return Normaliser.apply(z, z_x, kind, dim, keepdim)

    def _function(self, n: fx.Node, args: tuple, kwargs: dict) -> Callable[[torch.Tensor], torch.Tensor]:
        """The step as a function of its first argument, the others fixed."""
        if n.op == "call_module":
            return self.module.get_submodule(n.target)
        rest = args[1:]
        if n.op == "call_method":
            return lambda z: getattr(z, n.target)(*rest, **kwargs)
        options = {k: v for k, v in kwargs.items() if k != "inplace"}
        return lambda z: n.target(z, *rest, **options)
