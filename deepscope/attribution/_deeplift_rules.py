"""DeepLIFT's rules for B inputs and n references each, without module hooks (Shrikumar et al., 2017).

The traced model runs twice: once on the B inputs x (no graph; the activations at every rule step
are kept) and once on the B·n references r (rows ordered example-major, reference k of example b
at row b·n + k) with autograd. Each non-linear step of the second run is an autograd function
whose backward pass uses the *difference* between the example's activation and the reference's,
broadcast over the n references, instead of the local derivative:

* element-wise f (activations, exp, log): the rescale rule m = Δy/Δz, the derivative f'(z_x)
  where |Δz| < eps;
* max selections (max pooling, ``amax``/``max(dim)``, adaptive max pooling): Captum's routing rule,
  max(y_x, y_r) − y_r routed through the input's winners and y_x − max(y_x, y_r) through the
  reference's, divided by Δz;
* softmax, as the chain a = exp(z − c), s = Σa, v = 1/s, y = a·v with the log-ratio rule for the
  product (the decomposition of DeepSHAP / tangermeme's rule; exact: Σ_j m_j Δz_j = Σ_i g_i Δy_i);
* logsumexp L = log Σ exp z: m_j = (ΔL/Δs)(Δa_j/Δz_j), and log-softmax z − L from it;
* a product of two input-dependent tensors y = a ⊙ b (or a @ b): the midpoint rule
  m_a = (b_x + b_r)/2, m_b = (a_x + a_r)/2, which sums to Δy exactly for any bilinear map.

Affine steps pass multipliers like gradients. Every rule gives the input and its reference the
same multiplier, so one backward pass over the references alone yields the multipliers m, and
the attribution of reference k is (x − r_k) ⊙ m_k with Σ = F(x) − F(r_k) (summation-to-delta).
Compared with running the stacked (x; r) batch through a hooked model, x goes through the model
once per example instead of once per reference and the backward pass covers half the rows.
"""

from __future__ import annotations

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
from deepscope.errors import UnsupportedModelError

__all__ = ["PairedInterpreter"]

# Guard of the ratios inside the softmax/logsumexp rules: below it the ratio is replaced by its
# limit (a derivative). The replacement's error in Δy is second order in the guarded difference,
# so 1e-6 (tangermeme's value) keeps summation-to-delta to ~1e-12 relative.
_RATIO_GUARD = 1e-6


def _pair(reference: torch.Tensor, at_input: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, n, ...) view of a reference-run tensor and (B, 1, ...) view of the input-run tensor."""
    batch = at_input.shape[0]
    if reference.shape[0] % batch or reference.shape[1:] != at_input.shape[1:]:
        raise UnsupportedModelError(
            "deeplift: a non-linear step's input does not keep the batch as its first axis "
            f"(input run {tuple(at_input.shape)}, reference run {tuple(reference.shape)})."
        )
    return reference.unflatten(0, (batch, reference.shape[0] // batch)), at_input.unsqueeze(1)


def _small_mask(delta: torch.Tensor, eps: float) -> torch.Tensor:
    """1.0 where |delta| < eps, else 0.0, in delta's dtype (a float mask: cheaper than bool where on CPU)."""
    return torch.relu(torch.sign(eps - delta.abs()))


def _apply(function: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor) -> torch.Tensor:
    """``function(z)``, on a copy when the function works in place (``nn.ReLU(inplace=True)``)."""
    return function(z.clone() if getattr(function, "inplace", False) else z)


def _axis(dim: int) -> int:
    """An axis of the (B, ...) layout in the (B, n, ...) layout."""
    return dim + 1 if dim >= 0 else dim


def _axes(dim: Any) -> tuple[int, ...]:
    return tuple(_axis(d) for d in (dim if isinstance(dim, (tuple, list)) else (dim,)))


class _Rescale(torch.autograd.Function):
    """y = f(r) forward; backward g · Δy/Δz, g · f'(z_x) where |Δz| < eps."""

    @staticmethod
    def forward(ctx, z, z_x, y_x, function, eps, elementwise=True):
        output = _apply(function, z)
        ctx.save_for_backward(z, output, z_x, y_x)
        ctx.function, ctx.eps, ctx.elementwise = function, eps, elementwise
        return output

    @staticmethod
    def backward(ctx, grad_output):
        z, output, z_x, y_x = ctx.saved_tensors
        z_ref, z_in = _pair(z, z_x)
        y_ref, y_in = _pair(output, y_x)
        pairs = z_ref.shape[:2]
        delta_in = z_in - z_ref
        grad = grad_output.unflatten(0, pairs)
        # a whole module is not element-wise: Δy_j/Δz_j grows without bound as Δz_j → 0 while the other
        # inputs still differ, so its threshold is at least tangermeme's 1e-6
        eps = ctx.eps if ctx.elementwise else max(ctx.eps, _RATIO_GUARD)
        if eps <= _EXACT and ctx.elementwise:  # piecewise linear: f'(z_x) only where Δz = 0 (there Δy/Δz is NaN)
            with torch.enable_grad():
                leaf = z_x.detach().requires_grad_(True)
                (local,) = torch.autograd.grad(ctx.function(leaf.clone()).sum(), leaf)
            secant = torch.where(delta_in == 0, local.unsqueeze(1), torch.sub(y_in, y_ref).div_(delta_in))
            return secant.mul_(grad).flatten(0, 1), None, None, None, None, None
        if not bool(torch.linalg.vector_norm(delta_in, float("-inf")) < eps):  # min |Δz|: the common case
            secant = torch.sub(y_in, y_ref).div_(delta_in)  # in place: no more full-size allocations
            return secant.mul_(grad).flatten(0, 1), None, None, None, None, None
        small = torch.relu(torch.sign(eps - delta_in.abs()))  # 1.0 where |Δz| < eps (float mask)
        with torch.enable_grad():  # the derivative at x, only where the input and its reference coincide
            if ctx.elementwise:  # f'(z_x), once per example
                leaf = z_x.detach().requires_grad_(True)
                (local,) = torch.autograd.grad(ctx.function(leaf.clone()).sum(), leaf)
                local = grad * local.unsqueeze(1)
            else:  # a whole module: the vector-Jacobian product at x with the upstream gradient
                leaf = z_x.detach().repeat_interleave(pairs[1], 0).requires_grad_(True)
                (local,) = torch.autograd.grad(ctx.function(leaf.clone()), leaf, grad_output)
                local = local.unflatten(0, pairs)
        secant = (y_in - y_ref) / (delta_in + small * (1.0 - delta_in))
        return torch.lerp(grad * secant, local, small).flatten(0, 1), None, None, None, None, None


class _MaxRule(torch.autograd.Function):
    """A max selection with Captum's routing rule (complete by construction)."""

    @staticmethod
    def forward(ctx, z, z_x, y_x, function, eps):
        output = function(z)
        ctx.save_for_backward(z, output, z_x, y_x)
        ctx.function, ctx.eps = function, eps
        return output

    @staticmethod
    def backward(ctx, grad_output):
        z, output, z_x, y_x = ctx.saved_tensors
        z_ref, z_in = _pair(z, z_x)
        y_ref, y_in = _pair(output, y_x)
        n = z_ref.shape[1]
        grad = grad_output.unflatten(0, y_ref.shape[:2])
        upper = torch.maximum(y_in, y_ref)
        delta_in = z_in - z_ref
        small = _small_mask(delta_in, ctx.eps)
        fallback = bool(small.max() > 0)
        with torch.enable_grad():
            leaf_ref = z.detach().requires_grad_(True)
            (routed,) = torch.autograd.grad(ctx.function(leaf_ref), leaf_ref, (grad * (y_in - upper)).flatten(0, 1))
            leaf_in = z_x.detach().repeat_interleave(n, 0).requires_grad_(True)
            pooled = ctx.function(leaf_in)
            (routed_in,) = torch.autograd.grad(
                pooled, leaf_in, (grad * (upper - y_ref)).flatten(0, 1), retain_graph=fallback
            )
            local = torch.autograd.grad(pooled, leaf_in, grad_output)[0] if fallback else None
        routed = (routed + routed_in).unflatten(0, z_ref.shape[:2])
        if not fallback:
            return (routed / delta_in).flatten(0, 1), None, None, None, None
        multiplied = routed / (delta_in + small * (1.0 - delta_in))
        return torch.lerp(multiplied, local.unflatten(0, z_ref.shape[:2]), small).flatten(0, 1), None, None, None, None


class _PoolRule(torch.autograd.Function):
    """Max pooling (fixed or adaptive windows) with the routing rule of :class:`_MaxRule`, computed at the
    pooled size through the pooling indices: the share max(y_x, y_r) − y_r of each window is divided by Δz
    at the input's winner, y_x − max(y_x, y_r) by Δz at the reference's winner, and both are added back
    there (where Δz = 0: the gradient at x, i.e. the upstream gradient at the input's winners)."""

    @staticmethod
    def forward(ctx, z, z_x, y_x, pool):
        output, indices = pool(z)
        ctx.save_for_backward(z, output, indices, z_x, y_x)
        ctx.pool = pool
        return output

    @staticmethod
    def backward(ctx, grad_output):
        z, output, indices, z_x, y_x = ctx.saved_tensors
        batch, n = z_x.shape[0], z.shape[0] // z_x.shape[0]
        # everything in the (B, n, C, positions) layout; x's tensors broadcast over the n references (views)
        y_ref, y_in = _pair(output.flatten(2), y_x.flatten(2))
        grad = grad_output.flatten(2).unflatten(0, (batch, n))
        upper = torch.maximum(y_in, y_ref)
        flat_ref = z.flatten(2).unflatten(0, (batch, n))
        flat_in = z_x.flatten(2).unsqueeze(1).expand(batch, n, -1, -1)
        indices_ref = indices.flatten(2).unflatten(0, (batch, n))
        indices_in = ctx.pool(z_x)[1].flatten(2).unsqueeze(1).expand(batch, n, -1, -1)  # x's winners
        # Δz at the winners: y_x − z_r at x's winner, z_x − y_r at the reference's
        at_x = y_in - flat_ref.gather(3, indices_in)
        at_ref = flat_in.gather(3, indices_ref) - y_ref
        share_x, share_ref = grad * (upper - y_ref), grad * (y_in - upper)
        # Δz = 0 at a winner (the only case needing care: a share is at most its winner's own |Δz|):
        # the derivative at x there, i.e. the upstream gradient at x's winners and nothing at the reference's
        from_x = torch.where(at_x == 0, grad, share_x / at_x)
        from_ref = torch.where(at_ref == 0, 0.0, share_ref / at_ref)
        multiplier = torch.zeros_like(flat_ref)
        multiplier.scatter_add_(3, indices_in, from_x)
        multiplier.scatter_add_(3, indices_ref, from_ref)
        return multiplier.view_as(z), None, None, None


def _shifted_exponentials(z_ref, z_in, axes):
    """a = exp(z − c) for the input and its references with a common c per pair (no overflow), and Σa."""
    c = torch.maximum(z_in.amax(dim=axes, keepdim=True), z_ref.amax(dim=axes, keepdim=True))
    a_in, a_ref = torch.exp(z_in - c), torch.exp(z_ref - c)
    tiny = torch.finfo(a_in.dtype).tiny
    s_in = a_in.sum(dim=axes, keepdim=True).clamp_min(tiny)
    s_ref = a_ref.sum(dim=axes, keepdim=True).clamp_min(tiny)
    delta = z_in - z_ref
    exp_secant = torch.where(delta.abs() > _RATIO_GUARD, (a_in - a_ref) / delta, a_ref)  # Δa/Δz
    return a_in, a_ref, s_in, s_ref, exp_secant


def _ratio(numerator: torch.Tensor, denominator: torch.Tensor, limit: torch.Tensor) -> torch.Tensor:
    return torch.where(denominator.abs() > _RATIO_GUARD, numerator / denominator, limit)


class _Normaliser(torch.autograd.Function):
    """softmax / log_softmax / logsumexp over ``dim`` with their exact DeepLIFT decompositions."""

    @staticmethod
    def forward(ctx, z, z_x, kind, dim, keepdim):
        if kind == "softmax":
            output = torch.softmax(z, dim)
        elif kind == "log_softmax":
            output = torch.log_softmax(z, dim)
        else:
            output = torch.logsumexp(z, dim, keepdim=keepdim)
        ctx.save_for_backward(z, z_x)
        ctx.kind, ctx.dim, ctx.keepdim = kind, dim, keepdim
        return output

    @staticmethod
    def backward(ctx, grad_output):
        z, z_x = ctx.saved_tensors
        z_ref, z_in = _pair(z, z_x)
        axes = _axes(ctx.dim)
        a_in, a_ref, s_in, s_ref, exp_secant = _shifted_exponentials(z_ref, z_in, axes)
        grad = grad_output.unflatten(0, z_ref.shape[:2])
        if ctx.kind == "softmax":
            v_in, v_ref = s_in.reciprocal(), s_ref.reciprocal()
            y_in, y_ref = a_in * v_in, a_ref * v_ref
            delta_log_v = torch.log(v_in) - torch.log(v_ref)
            # y = a·v: log y = log a + log v, Δlog a = Δz; Δy/Δlog y carries both paths
            y_secant = _ratio(y_in - y_ref, (z_in - z_ref) + delta_log_v, y_ref)
            log_v_secant = _ratio(delta_log_v, v_in - v_ref, v_ref.reciprocal())
            through_sum = (grad * y_secant * log_v_secant * (-v_in * v_ref)).sum(dim=axes, keepdim=True)
            result = grad * y_secant + exp_secant * through_sum
        else:
            log_secant = _ratio(torch.log(s_in) - torch.log(s_ref), s_in - s_ref, s_ref.reciprocal())  # ΔL/Δs
            multiplier = log_secant * exp_secant  # ∂L/∂z_j in DeepLIFT's sense
            if ctx.kind == "log_softmax":
                result = grad - grad.sum(dim=axes, keepdim=True) * multiplier
            else:
                if not ctx.keepdim:
                    for axis in sorted(a % z_ref.dim() for a in axes):
                        grad = grad.unsqueeze(axis)
                result = grad * multiplier
        return result.flatten(0, 1), None, None, None, None


class _Product(torch.autograd.Function):
    """y = op(a, b), bilinear; backward: the vector-Jacobian product at the midpoints (a_x + a_r)/2, (b_x + b_r)/2."""

    @staticmethod
    def forward(ctx, a, b, a_x, b_x, operation):
        ctx.save_for_backward(a, b, a_x, b_x)
        ctx.operation = operation
        return operation(a, b)

    @staticmethod
    def backward(ctx, grad_output):
        a, b, a_x, b_x = ctx.saved_tensors
        a_ref, a_in = _pair(a, a_x)
        b_ref, b_in = _pair(b, b_x)
        with torch.enable_grad():
            a_mid = ((a_in + a_ref) / 2).flatten(0, 1).detach().requires_grad_(True)
            b_mid = ((b_in + b_ref) / 2).flatten(0, 1).detach().requires_grad_(True)
            grads = torch.autograd.grad(ctx.operation(a_mid, b_mid), (a_mid, b_mid), grad_output)
        return grads[0], grads[1], None, None, None


def _max_values(function: Callable[..., Any], dim: Any, keepdim: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    if function is torch.amax or function == "amax":
        return lambda z: torch.amax(z, dim, keepdim)
    return lambda z: torch.max(z, dim, keepdim).values


# Piecewise-linear activations: Δy and Δz round alike, so the secant is exact and within the slopes for
# any Δz ≠ 0 and the derivative is needed only where Δz = 0 exactly (below the smallest normal float);
# the same holds for the routing rule of max pooling (a routed share is at most the winner's own Δz).
# Smooth functions keep ``eps``: there a tiny Δz leaves a secant of rounding errors.
_EXACT = 1.2e-38
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
        return lambda z: pool(z, *options, ceil_mode=module.ceil_mode, return_indices=True)
    if (
        n.op == "call_function"
        and n.target in _POOLS.values()
        and len(args) <= 2 + 3 * ("adaptive" not in n.target.__name__)
    ):
        rest, options = args[1:], {**kwargs, "return_indices": True}
        return lambda z: n.target(z, *rest, **options)
    return None


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

    def run_node(self, n: fx.Node) -> Any:
        if n not in self.rules:
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

    def _rule(self, n: fx.Node) -> Any:
        args, kwargs = self.fetch_args_kwargs_from_env(n)
        (operands_x, value_x), kind, z = self.saved[n], self.rules[n], args[0]
        if kind == "product":
            operation = {"mul": torch.mul, "matmul": torch.matmul, "bmm": torch.bmm}.get(n.target, n.target)
            return _Product.apply(z, args[1], operands_x[0], operands_x[1], operation)
        function = self._function(n, args, kwargs)
        if kind == "rescale":
            elementwise = not (n.op == "call_module" and isinstance(function, self.leaf_types))
            eps = _EXACT if _piecewise_linear(n, function) else self.eps
            return _Rescale.apply(z, operands_x[0], value_x, function, eps, elementwise)
        if kind == "max":
            if n.target in (torch.max, "max"):
                dim, keepdim = reduced_dims(n), bool(n.args[2] if len(n.args) > 2 else kwargs.get("keepdim", False))
                values = _MaxRule.apply(z, operands_x[0], value_x.values, _max_values(n.target, dim, keepdim), self.eps)
                return torch.return_types.max((values, z.detach().max(dim, keepdim).indices))
            pool = _with_indices(n, self.module, args, kwargs)
            if pool is not None:
                return _PoolRule.apply(z, operands_x[0], value_x, pool)
            return _MaxRule.apply(z, operands_x[0], value_x, function, self.eps)
        return self._normaliser(n, z, operands_x[0], kwargs)

    def _normaliser(self, n: fx.Node, z: torch.Tensor, z_x: torch.Tensor, kwargs: dict) -> torch.Tensor:
        if n.op == "call_module":
            module = self.module.get_submodule(n.target)
            kind = "softmax" if isinstance(module, SOFTMAX_MODULES) else "log_softmax"
            return _Normaliser.apply(z, z_x, kind, module.dim, False)
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
        return _Normaliser.apply(z, z_x, kind, dim, keepdim)

    def _function(self, n: fx.Node, args: tuple, kwargs: dict) -> Callable[[torch.Tensor], torch.Tensor]:
        """The step as a function of its first argument, the others fixed."""
        if n.op == "call_module":
            return self.module.get_submodule(n.target)
        rest = args[1:]
        if n.op == "call_method":
            return lambda z: getattr(z, n.target)(*rest, **kwargs)
        options = {k: v for k, v in kwargs.items() if k != "inplace"}
        return lambda z: n.target(z, *rest, **options)
