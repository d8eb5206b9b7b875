"""DeepLIFT's rules for B inputs and n references each, as autograd functions (Shrikumar et al., 2017).

The interpreter (:mod:`deepscope.attribution._deeplift_interpreter`) runs the traced model twice:
once on the B inputs x (no graph; the activations at every rule step are kept) and once on the B·n references r (rows ordered example-major, reference k of example b
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

from collections.abc import Callable
from typing import Any

import torch

from deepscope.errors import UnsupportedModelError

__all__ = ["EXACT", "MaxRule", "Normaliser", "PoolRule", "Product", "Rescale"]

# Guard of the ratios inside the softmax/logsumexp rules: below it the ratio is replaced by its
# limit (a derivative). The replacement's error in Δy is second order in the guarded difference,
# so 1e-6 (tangermeme's value) keeps summation-to-delta to ~1e-12 relative.
_RATIO_GUARD = 1e-6

# Piecewise-linear activations: Δy and Δz round alike, so the secant is exact and within the slopes for
# any Δz ≠ 0 and the derivative is needed only where Δz = 0 exactly (below the smallest normal float);
# the same holds for the routing rule of max pooling (a routed share is at most the winner's own Δz).
# Smooth functions keep ``eps``: there a tiny Δz leaves a secant of rounding errors.
EXACT = 1.2e-38


def _pair(reference: torch.Tensor, at_input: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, n, ...) view of a reference-run tensor and (B, 1, ...) view of the input-run tensor."""
    batch = at_input.shape[0]
    if reference.shape[0] % batch or reference.shape[1:] != at_input.shape[1:]:
        raise UnsupportedModelError(
            "deeplift: a non-linear step's input does not keep the batch as its first axis "
            f"(input run {tuple(at_input.shape)}, reference run {tuple(reference.shape)})."
        )
    return reference.unflatten(0, (batch, reference.shape[0] // batch)), at_input.unsqueeze(1)


def _smallest(delta: torch.Tensor) -> float:
    """min |delta| (``abs().amin()``: several times faster on CPU than ``vector_norm(delta, -inf)``)."""
    return float(delta.abs().amin()) if delta.numel() else float("inf")


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


class Rescale(torch.autograd.Function):
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
        smallest = _smallest(delta_in)
        if eps <= EXACT and ctx.elementwise:  # piecewise linear: f'(z_x) only where Δz = 0 (there Δy/Δz is NaN)
            secant = torch.sub(y_in, y_ref).div_(delta_in)
            if smallest == 0:
                with torch.enable_grad():
                    leaf = z_x.detach().requires_grad_(True)
                    (local,) = torch.autograd.grad(ctx.function(leaf.clone()).sum(), leaf)
                secant = torch.where(delta_in == 0, local.unsqueeze(1), secant)
            return secant.mul_(grad).flatten(0, 1), None, None, None, None, None
        if not smallest < eps:  # the common case
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


class MaxRule(torch.autograd.Function):
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


class PoolRule(torch.autograd.Function):
    """Max pooling (fixed or adaptive windows) with the routing rule of :class:`MaxRule`, computed at the
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
        # everything in the (B, n, C, positions) layout; x's tensors broadcast over the n references (views).
        # Few fresh full-size tensors, the rest in place: on CPU a fresh large tensor costs its page faults.
        y_ref, y_in = _pair(output.flatten(2), y_x.flatten(2))
        grad = grad_output.flatten(2).unflatten(0, (batch, n))
        flat_ref = z.flatten(2).unflatten(0, (batch, n))
        flat_in = z_x.flatten(2).unsqueeze(1).expand(batch, n, -1, -1)
        indices_ref = indices.flatten(2).unflatten(0, (batch, n))
        indices_in = ctx.pool(z_x)[1].flatten(2).unsqueeze(1).expand(batch, n, -1, -1)  # x's winners
        # Δz at the winners: y_x − z_r at x's winner, z_x − y_r at the reference's
        at_x = flat_ref.gather(3, indices_in).neg_().add_(y_in)
        at_ref = flat_in.gather(3, indices_ref).sub_(y_ref)
        # the shares max(y_x, y_r) − y_r = relu(Δy) and y_x − max(y_x, y_r) = min(Δy, 0) of the upstream gradient
        share_ref = torch.sub(y_in, y_ref)
        share_x = share_ref.clamp_min(0.0).mul_(grad)
        share_ref.clamp_max_(0.0).mul_(grad)
        # Δz = 0 at a winner (the only case needing care: a share is at most its winner's own |Δz|):
        # the derivative at x there, i.e. the upstream gradient at x's winners and nothing at the reference's
        from_x = torch.where(at_x == 0, grad, share_x.div_(at_x), out=share_x)
        from_ref = share_ref.div_(at_ref).masked_fill_(at_ref == 0, 0.0)
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


class Normaliser(torch.autograd.Function):
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


class Product(torch.autograd.Function):
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
