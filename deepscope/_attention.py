"""Fused attention under second-order and forward-mode autodiff: run it on PyTorch's math kernel.

``torch.nn.functional.scaled_dot_product_attention`` (SDPA; HuggingFace's default attention,
``attn_implementation="sdpa"``) dispatches to fused kernels (flash / memory-efficient attention)
whose backward has no derivative of its own and which have no forward-mode rule: a
Hessian-vector product (double backward) fails with "derivative for
aten::_scaled_dot_product_flash_attention_for_cpu_backward is not implemented" and a
Jacobian-vector product (``torch.func.jvp``) with "Trying to use forward AD with
_scaled_dot_product_flash_attention_for_cpu that does not support it". The math backend computes
the same function, ``softmax(Q Kᵀ / √d + mask) V`` (Vaswani et al. 2017, "Attention is all you
need", eq. 1), from ordinary differentiable operations, so every order of derivative exists.

:func:`math_attention` selects that backend for the code inside it (``torch.nn.attention.sdpa_kernel``
with ``SDPBackend.MATH``), restores the previous selection on exit (also on error), and reports
whether SDPA was called at all, so an analysis adds :data:`NOTE` to its result only when it matters.

Example:
    >>> with math_attention() as attention:
    ...     hessian_vector_product = ...  # double backward through the model
    >>> notes = [NOTE] if attention.seen else []
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

__all__ = ["NOTE", "AttentionUse", "math_attention"]

NOTE = "fused attention ran on PyTorch's math kernel for double-backward/forward-mode AD"

_SDPA = torch.nn.functional.scaled_dot_product_attention
# torch's own multi-head attention (nn.MultiheadAttention, nn.Transformer*) calls SDPA from inside
# this Python function when it need not return the weights; a torch-function mode is switched off
# while it handles a call, so the inner SDPA call is not seen and the outer one is recognised here
_MHA = torch.nn.functional.multi_head_attention_forward


@dataclass
class AttentionUse:
    """What :func:`math_attention` saw: ``seen`` is True once SDPA ran inside the block."""

    seen: bool = False


class _Watch(TorchFunctionMode):
    """Records a call of ``scaled_dot_product_attention``; every call passes through unchanged."""

    def __init__(self, use: AttentionUse) -> None:
        super().__init__()
        self.use = use

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func is _SDPA:
            self.use.seen = True
        elif func is _MHA:  # need_weights is its 16th parameter
            need_weights = (kwargs or {}).get("need_weights", args[15] if len(args) > 15 else True)
            self.use.seen = self.use.seen or not need_weights
        return func(*args, **(kwargs or {}))


@contextmanager
def math_attention(watch: bool = True) -> Iterator[AttentionUse]:
    """Run fused ``scaled_dot_product_attention`` on the math backend inside the block.

    Yields an :class:`AttentionUse` whose ``seen`` tells whether SDPA was called in the block (a
    model without attention leaves it False and its analysis needs no note). Watching intercepts
    every torch call in the block (a Python call each), so a caller that repeats the same work
    watches once and passes ``watch=False`` afterwards (``seen`` then stays False). The previous
    backend selection is restored on exit, whether the block finishes or raises.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel

    use = AttentionUse()
    with sdpa_kernel([SDPBackend.MATH]):
        if not watch:
            yield use
            return
        with _Watch(use):
            yield use
