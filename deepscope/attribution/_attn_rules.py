"""The LRP rules of AttnLRP as a modified backward pass: a TorchFunctionMode that swaps each operation.

Relevance is written in the gradient × input form: the relevance of any tensor h is R_h = h ⊙ g_h,
where g is the MODIFIED gradient this mode makes autograd compute (Achtibat et al., 2024, "AttnLRP:
attention-aware layer-wise relevance propagation for transformers", section 3; the LXT library).
Operations linear in their one input (views, sums, additions, scalings, a matmul with a constant)
keep their true gradient, which is LRP-0 and conserves exactly. The others are swapped:

* linear layers (``F.linear``, ``torch.addmm``, convolutions), ε-rule: g_x = Wᵀ (g_y ⊙ y / (y + ε sign y));
  the bias and ε keep the share Σ y g_y − Σ x g_x ("bias", "epsilon").
* elementwise activations (GELU, tanh, SiLU, ReLU, ...; HuggingFace's activation modules and
  hand-written RMSNorm modules as a whole), identity rule: R_x = R_y, i.e. g_x = g_y ⊙ y / x.
* LayerNorm / RMSNorm, identity rule on the normalisation: the standard deviation is held constant,
  so x ↦ (x − μ)/σ is linear and conserves; the affine β keeps Σ β g ("bias").
* the product of two activations (``q @ kᵀ``, ``s @ v``, ``a * b``), uniform rule: each operand
  gets half, g_a = ½ ∂(ab)/∂a, g_b = ½ ∂(ab)/∂b (exact: Σ a g_a + Σ b g_b = Σ ab g).
* softmax, AttnLRP's rule R_x = x ⊙ (R̃ − s Σ R̃) with R̃ = s ⊙ g — the softmax's own gradient
  times its input; it does not conserve (the "bias" of its Taylor expansion, "softmax" here).
  With ``cp=True`` the attention weights are held constant instead (CP-LRP, Ali et al., 2022):
  all relevance flows through the values, exactly.
* ``F.scaled_dot_product_attention`` is decomposed into the matmul/softmax formula above.
* additions of a constant (position embeddings, masks, a class token joined by ``torch.cat``)
  keep Σ c g ("constant"); BatchNorm in eval mode is affine, its offset keeps Σ c g ("bias").

A :class:`Ledger` records each kept share per example, so Σ R_input + Σ kept = F(x) up to the
operations no rule covers ("untracked", reported by the method).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

__all__ = ["KINDS", "Ledger", "ModifiedGradient", "RuleMode", "identity_rule", "whole_module"]

KINDS = ("bias", "epsilon", "softmax", "activation", "constant")

_Base = torch._C.TensorBase


class Ledger:
    """Relevance kept by each rule, per kind and example: ``totals[kind]`` of shape (T, n)."""

    def __init__(self, n_targets: int, n: int, dtype: torch.dtype, device: torch.device) -> None:
        self.totals = {kind: torch.zeros(n_targets, n, dtype=dtype, device=device) for kind in KINDS}
        self.target, self.start, self.rows = 0, 0, n

    def add(self, kind: str, contribution: torch.Tensor) -> None:
        """Add the per-example sums of ``contribution`` (its first dimension: the examples, or examples × k)."""
        if contribution.dim() == 0 or contribution.numel() % self.rows:
            return  # no batch dimension to split by: cannot happen for the rules' own products
        per_example = contribution.detach().reshape(self.rows, -1).sum(1)
        row = self.totals[kind][self.target]
        row[self.start : self.start + self.rows] += per_example.to(row.dtype)


def _activation(tensor: Any) -> bool:
    """A tensor the relevance flows through: one that depends on the attributed layer (needs grad)."""
    return isinstance(tensor, torch.Tensor) and tensor.requires_grad and tensor.is_floating_point()


def _kept(x: torch.Tensor, gx: torch.Tensor, y: torch.Tensor, gy: torch.Tensor) -> torch.Tensor:
    """Σ y g_y − Σ x g_x per row (0 where a term is not finite, e.g. a −inf masked logit)."""
    out = torch.nan_to_num(y * gy, nan=0.0, posinf=0.0, neginf=0.0).reshape(y.shape[0], -1).sum(1)
    inn = torch.nan_to_num(x * gx, nan=0.0, posinf=0.0, neginf=0.0).reshape(x.shape[0], -1).sum(1)
    return out - inn


class ModifiedGradient(torch.autograd.Function):
    """``y = compute(x)`` with a custom backward ``rule(x, y, g) -> g_x`` (the original graph is not followed)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, compute: Callable, rule: Callable) -> torch.Tensor:  # type: ignore[override]
        y = compute(x)
        ctx.save_for_backward(x, y)
        ctx.rule = rule
        return y

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        x, y = ctx.saved_tensors
        return ctx.rule(x, y, g), None, None


class _Scale(torch.autograd.Function):
    """Identity forward; backward g ↦ g ⊙ y/(y + ε sign y), recording what the bias and ε keep."""

    @staticmethod
    def forward(ctx: Any, y: torch.Tensor, bias: Any, epsilon: float, ledger: Ledger) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(y)
        ctx.bias, ctx.epsilon, ctx.ledger = bias, epsilon, ledger
        return y.clone()

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        (y,) = ctx.saved_tensors
        scaled = g
        if ctx.epsilon > 0:
            stabiliser = torch.where(y >= 0, ctx.epsilon, -ctx.epsilon).to(y.dtype)
            scaled = g * (y / (y + stabiliser))
            ctx.ledger.add("epsilon", y * (g - scaled))
        if ctx.bias is not None:
            ctx.ledger.add("bias", ctx.bias * scaled)
        return scaled, None, None, None


class _Constant(torch.autograd.Function):
    """Identity forward; backward passes g unchanged and records Σ c ⊙ g (a constant added there)."""

    @staticmethod
    def forward(ctx: Any, y: torch.Tensor, constant: Any, kind: str, ledger: Ledger) -> torch.Tensor:  # type: ignore[override]
        ctx.constant, ctx.kind, ctx.ledger = constant, kind, ledger
        return y.clone()

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        product = torch.nan_to_num(torch.as_tensor(ctx.constant, dtype=g.dtype, device=g.device) * g, nan=0.0)
        ctx.ledger.add(ctx.kind, product.expand_as(g) if product.shape != g.shape else product)
        return g, None, None, None


def identity_rule(ledger: Ledger) -> Callable:
    """R_x = R_y: g_x = g_y ⊙ y / x (0 where x = 0, whose relevance x ⊙ g is 0 anyway)."""

    def rule(x: torch.Tensor, y: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        ratio = torch.where(x != 0, y / torch.where(x != 0, x, torch.ones_like(x)), torch.zeros_like(x))
        gx = g * ratio
        ledger.add("activation", _kept(x, gx, y, g))
        return gx

    return rule


def _softmax_rule(ledger: Ledger, dim: int) -> Callable:
    def rule(x: torch.Tensor, s: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        g = g.to(s.dtype)
        gx = s * (g - (s * g).sum(dim, keepdim=True))
        ledger.add("softmax", _kept(torch.where(s > 0, x.to(s.dtype), 0.0), gx, s, g))
        return gx.to(x.dtype)

    return rule


def _norm_rule(dims: tuple[int, ...], weight: Any, eps: float, center: bool) -> Callable:
    """LayerNorm (center=True) / RMSNorm with σ held constant: g_x = C((γ ⊙ g)/σ), C the centring."""

    def rule(x: torch.Tensor, y: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        gy = g * weight if weight is not None else g
        if center:
            sigma = torch.sqrt(x.var(dims, unbiased=False, keepdim=True) + eps)
            scaled = gy / sigma
            return scaled - scaled.mean(dims, keepdim=True)
        rms = torch.sqrt(x.pow(2).mean(dims, keepdim=True) + eps)
        return gy / rms

    return rule


def whole_module(module: torch.nn.Module) -> bool:
    """Modules that get the identity rule as a whole, because their formulas mix several operations.

    HuggingFace's activation modules (``NewGELUActivation``: 0.5 x (1 + tanh(...)), ...) and RMSNorm
    modules written out by hand (``LlamaRMSNorm``: w ⊙ x · rsqrt(mean x²), a product of two
    activations): y = (w/rms) ⊙ x elementwise, so the identity rule R_x = R_y is exactly the
    rule with rms held constant.
    """
    return type(module).__module__.startswith("transformers.activations") or type(module).__name__.endswith("RMSNorm")


_ACTIVATIONS = {F.gelu, F.silu, F.relu, torch.relu, torch.tanh, _Base.tanh, _Base.relu, F.elu, F.leaky_relu, F.mish}
_LINEAR = {F.linear, torch.addmm, F.conv1d, F.conv2d, F.conv3d}
_PRODUCTS = {torch.matmul, _Base.matmul, _Base.__matmul__, torch.bmm, _Base.bmm, torch.mul, _Base.mul, _Base.__mul__}
_SOFTMAX = {F.softmax, torch.softmax, _Base.softmax}
_ADD = {torch.add, _Base.add, _Base.__add__, _Base.__radd__, _Base.__iadd__}
_SUB = {torch.sub, _Base.sub, _Base.__sub__, _Base.__isub__}


class RuleMode(TorchFunctionMode):
    """Inside ``with RuleMode(ledger, epsilon, cp):`` a forward pass builds the AttnLRP backward graph."""

    def __init__(self, ledger: Ledger, epsilon: float, cp: bool) -> None:
        super().__init__()
        self.ledger, self.epsilon, self.cp = ledger, epsilon, cp

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        try:
            if func in _LINEAR:
                return self._linear(func, args, kwargs)
            if func in _PRODUCTS and len(args) == 2 and _activation(args[0]) and _activation(args[1]):
                return self._uniform(func, args[0], args[1])
            if func in _SOFTMAX:
                return self._softmax(func, args, kwargs)
            if func in _ACTIVATIONS and _activation(args[0]):
                return ModifiedGradient.apply(
                    args[0], lambda x: func(x, *args[1:], **kwargs), identity_rule(self.ledger)
                )
            if func is F.layer_norm or func is getattr(F, "rms_norm", None):
                return self._norm(func, args, kwargs)
            if func is F.scaled_dot_product_attention:
                return self._attention(*args, **kwargs)
            if (func in _ADD or func in _SUB) and len(args) >= 2:
                return self._add_constant(func, args, kwargs)
            if func is torch.cat:
                return self._cat(args, kwargs)
            if func is F.batch_norm:
                return self._batch_norm(func, args, kwargs)
        except TypeError:  # an unusual signature (out=, keyword-only forms): the plain operation
            pass
        return func(*args, **kwargs)

    def _linear(self, func: Any, args: tuple, kwargs: dict) -> Any:
        x, bias = (args[1], args[0]) if func is torch.addmm else (args[0], None)
        if func is not torch.addmm:
            bias = args[2] if len(args) > 2 else kwargs.get("bias")
        y = func(*args, **kwargs)
        if not _activation(x):
            return y
        if bias is not None and func in (F.conv1d, F.conv2d, F.conv3d):
            bias = bias.view(-1, *([1] * (y.dim() - 2)))
        return _Scale.apply(y, None if bias is None else bias.detach(), self.epsilon, self.ledger)

    @staticmethod
    def _uniform(func: Any, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return 0.5 * func(a, b.detach()) + 0.5 * func(a.detach(), b)

    def _softmax(self, func: Any, args: tuple, kwargs: dict) -> Any:
        x = args[0]
        if not _activation(x):
            return func(*args, **kwargs)
        if self.cp:
            return func(*args, **kwargs).detach()
        dim = kwargs.get("dim", args[1] if len(args) > 1 else -1)
        return ModifiedGradient.apply(
            x, lambda value: func(value, *args[1:], **kwargs), _softmax_rule(self.ledger, dim)
        )

    def _norm(self, func: Any, args: tuple, kwargs: dict) -> Any:
        names = ("input", "normalized_shape", "weight", "bias", "eps")
        given = dict(zip(names, args)) | kwargs
        x = given["input"]
        if not _activation(x):
            return func(*args, **kwargs)
        dims = tuple(range(-len(tuple(given["normalized_shape"])), 0))
        center = func is F.layer_norm
        eps = given.get("eps") or (1e-5 if center else torch.finfo(x.dtype).eps)
        weight = given.get("weight")
        bias = given.get("bias") if center else None
        rule = _norm_rule(dims, None if weight is None else weight.detach(), eps, center)
        y = ModifiedGradient.apply(x, lambda value: func(*((value,) + tuple(args[1:])), **kwargs), rule)
        return y if bias is None else _Constant.apply(y, bias.detach(), "bias", self.ledger)

    def _attention(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attn_mask: Any = None,
        dropout_p: float = 0.0,
        is_causal: bool = False,
        scale: float | None = None,
        enable_gqa: bool = False,
    ) -> torch.Tensor:
        """softmax(q kᵀ · scale + mask) v, each step through its rule (dropout is off: the model is in eval)."""
        if enable_gqa:
            key = key.repeat_interleave(query.size(-3) // key.size(-3), -3)
            value = value.repeat_interleave(query.size(-3) // value.size(-3), -3)
        scale = 1.0 / math.sqrt(query.size(-1)) if scale is None else scale
        scores = self.__torch_function__(torch.matmul, None, (query, key.transpose(-2, -1))) * scale
        length, source = query.size(-2), key.size(-2)
        if is_causal:
            allowed = torch.ones(length, source, dtype=torch.bool, device=query.device).tril()
            scores = scores.masked_fill(~allowed, float("-inf"))
        if attn_mask is not None:
            if attn_mask.dtype == torch.bool:
                scores = scores.masked_fill(~attn_mask, float("-inf"))
            else:
                scores = self._add_constant(torch.add, (scores, attn_mask), {})
        weights = self._softmax(torch.softmax, (scores, -1), {})
        return self.__torch_function__(torch.matmul, None, (weights, value))

    def _add_constant(self, func: Any, args: tuple, kwargs: dict) -> Any:
        a, b = args[0], args[1]
        y = func(*args, **kwargs)
        if not isinstance(y, torch.Tensor) or not _activation(y) or (_activation(a) and _activation(b)):
            return y
        constant = b if _activation(a) else a
        if isinstance(constant, torch.Tensor):
            constant = constant.detach()
        elif not isinstance(constant, (int, float)):
            return y
        alpha = kwargs.get("alpha", args[2] if len(args) > 2 else 1)
        if func in _SUB:
            # a − c keeps −c; c − a (rsub) keeps c
            constant = -constant if _activation(a) else constant
        return _Constant.apply(y, constant * alpha if alpha != 1 else constant, "constant", self.ledger)

    def _batch_norm(self, func: Any, args: tuple, kwargs: dict) -> Any:
        """BatchNorm in eval mode is affine per channel: x ↦ a x + c; the offset c keeps Σ c g ("bias")."""
        names = ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps")
        given = dict(zip(names, args)) | kwargs
        y = func(*args, **kwargs)
        x, mean, var = given["input"], given["running_mean"], given["running_var"]
        if not _activation(x) or given.get("training", False) or mean is None or var is None:
            return y
        weight, bias = given.get("weight"), given.get("bias")
        slope = torch.rsqrt(var + given.get("eps", 1e-5)) * (1.0 if weight is None else weight.detach())
        offset = (0.0 if bias is None else bias.detach()) - mean * slope
        return _Constant.apply(y, offset.view(-1, *([1] * (y.dim() - 2))), "bias", self.ledger)

    def _cat(self, args: tuple, kwargs: dict) -> Any:
        tensors = list(args[0])
        y = torch.cat(*args, **kwargs)
        if not _activation(y) or all(_activation(t) for t in tensors):
            return y
        constant = torch.cat(
            [torch.zeros_like(t) if _activation(t) else t.detach() for t in tensors], *args[1:], **kwargs
        )
        return _Constant.apply(y, constant, "constant", self.ledger)
