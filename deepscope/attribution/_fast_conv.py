"""1-D convolutions and max pooling for the DeepLIFT interpreter: only the output positions that are kept,
in the faster layout.

Two rewrites of an ``nn.Conv1d`` (zero padding) that give the same values up to float rounding:

* **window**: when the convolution's only use is a slice of its positions, ``y = conv(z)[..., a:b]``,
  output position t reads the input positions t·s − p + j·d, j = 0..k−1 (stride s, padding p,
  dilation d, kernel k), so the kept outputs read the input window [a·s − p, (b−1)·s − p + d(k−1) + 1)
  only. The convolution runs on that window, zero-padded where it leaves the input, without
  padding: the discarded outputs are never computed nor differentiated. bpnet-lite's BPNet computes
  its 75-wide profile convolution at all 250 positions of a 250 bp input and keeps 96
  (``[..., trimming:-trimming]``).
* **layout**: on CPU, a convolution with few output channels (≤ 16) and a wide fan-in
  (in_channels/groups · kernel_size ≥ 256) runs as a 2-D convolution over (batch, channels, 1, length)
  in channels-last memory format. oneDNN's input gradient (the backward pass DeepLIFT needs) is 2-3x
  faster there: forward and backward over 160 rows of 250 positions, one thread,
  ``time.process_time``: 34 → 2 channels, kernel 75 (the profile convolution) 35 ms against 105 ms;
  32 → 2, kernel 21: 13 against 34 ms; 34 → 16, kernel 75: 62 against 123 ms. With more output
  channels the gain shrinks (128 → 64, kernel 11: 133 against 168 ms, and none measurable over a whole
  Basset DeepLIFT-SHAP run), and below a fan-in of 256 (BPNet's 32 → 32, kernel 3 and 4 → 32,
  kernel 21) the 1-D convolution is as fast or faster: those keep it, and their exact float sums.

And a third: an eval-mode ``BatchNorm1d`` that is the convolution's only use is folded into it,
W' = W · s, b' = (b − μ) · s + β with s = γ / √(σ² + ε) (running statistics): one pass over the
activations instead of three (the convolution, the normalisation and its backward pass): 16% of a
Basset DeepLIFT-SHAP run.

All leave the result equal to ``module(z)[..., a:b]`` (``bn(module(z))``) up to the order of the float sums.

And one for 1-D max pooling with indices (the routing rule needs the winners of every reference):
``F.max_pool1d(..., return_indices=True)`` runs on CPU as a channels-last ``max_pool2d``, which gives the
same values and indices (ties and NaN included: both keep the first maximum of a window) 5x faster:
6 ms against 33 ms for Basset's first pooling (160 × 128 × 232, kernel 3), one thread.

Example:
    >>> conv = torch.nn.Conv1d(4, 2, 9, padding=4)
    >>> z = torch.randn(3, 4, 50)
    >>> window = output_window((slice(None), slice(None), slice(10, -10)), conv, z)
    >>> window
    (10, 40)
    >>> bool(torch.allclose(conv1d(conv, z, window), conv(z)[..., 10:-10], atol=1e-6))
    True
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.modules import module as module_hooks

__all__ = [
    "CHANNELS_LAST_MAX_OUT",
    "CHANNELS_LAST_MIN_FAN_IN",
    "batch_norm_affine",
    "conv1d",
    "is_foldable_batch_norm",
    "is_plain_conv1d",
    "max_pool1d_with_indices",
    "output_window",
]

# the channels-last 2-D convolution is used on CPU from this fan-in (in_channels/groups · kernel_size)
# up to this many output channels (measured, see the module docstring)
CHANNELS_LAST_MIN_FAN_IN = 256
CHANNELS_LAST_MAX_OUT = 16


def _hooked(module: nn.Module) -> bool:
    """Forward or backward hooks on the module or on every module: calling the module runs them, we would not."""
    hooks = (module._forward_hooks, module._forward_pre_hooks, module._backward_hooks, module._backward_pre_hooks)
    everywhere = (
        module_hooks._global_forward_hooks,
        module_hooks._global_forward_pre_hooks,
        module_hooks._global_backward_hooks,
        module_hooks._global_backward_pre_hooks,
    )
    return any(len(h) for h in hooks + everywhere)


def is_plain_conv1d(module: nn.Module) -> bool:
    """An ``nn.Conv1d`` (or subclass with the same forward) with zero padding given as a number and no hooks."""
    return (
        isinstance(module, nn.Conv1d)
        and type(module).forward is nn.Conv1d.forward
        and type(module)._conv_forward is nn.Conv1d._conv_forward
        and module.padding_mode == "zeros"
        and not isinstance(module.padding, str)
        and not _hooked(module)
    )


def _geometry(module: nn.Conv1d) -> tuple[int, int, int, int]:
    """(kernel, stride, dilation, padding)."""
    return module.kernel_size[0], module.stride[0], module.dilation[0], module.padding[0]


def output_window(index: Any, module: nn.Conv1d, z: torch.Tensor) -> tuple[int, int] | None:
    """The kept output positions [a, b) when ``index`` (a ``__getitem__`` argument) slices only the
    last axis of ``module(z)`` with step 1 (``[:, :, a:b]``, ``[..., a:b]``); None otherwise."""
    if z.dim() != 3 or not isinstance(index, tuple) or not index or not isinstance(index[-1], slice):
        return None
    leading = index[:-1]
    if leading not in ((Ellipsis,), (slice(None),) * 2):
        return None
    last = index[-1]
    if not all(v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in (last.start, last.stop)):
        return None
    if last.step not in (None, 1):
        return None
    kernel, stride, dilation, padding = _geometry(module)
    length = (z.shape[-1] + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    start, stop, _ = last.indices(length)
    return (start, stop) if stop > start else None


def _channels_last(module: nn.Conv1d, z: torch.Tensor) -> bool:
    fan_in = module.in_channels // module.groups * module.kernel_size[0]
    narrow = module.out_channels <= CHANNELS_LAST_MAX_OUT
    return z.device.type == "cpu" and z.dim() == 3 and narrow and fan_in >= CHANNELS_LAST_MIN_FAN_IN


def is_foldable_batch_norm(module: nn.Module) -> bool:
    """An eval-mode ``nn.BatchNorm1d`` normalising with its running statistics, without hooks."""
    return (
        isinstance(module, nn.BatchNorm1d)
        and type(module).forward is nn.BatchNorm1d.forward
        and not module.training
        and module.running_mean is not None
        and module.running_var is not None
        and not _hooked(module)
    )


def batch_norm_affine(module: nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
    """(s, t) with ``module(h) = h · s + t`` per channel: s = γ / √(σ² + ε), t = β − μ · s."""
    scale = torch.rsqrt(module.running_var + module.eps)
    if module.weight is not None:
        scale = scale * module.weight
    shift = -module.running_mean * scale
    return scale, shift if module.bias is None else shift + module.bias


def conv1d(
    module: nn.Conv1d,
    z: torch.Tensor,
    window: tuple[int, int] | None = None,
    affine: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """``module(z)[..., a:b]`` for ``window = (a, b)`` (``module(z)`` for None), computed on the input
    window the kept outputs read and, where faster, as a channels-last 2-D convolution; with
    ``affine = (s, t)`` (per output channel), ``module(z) · s + t`` by scaling the weights and bias.

    ``module`` must satisfy :func:`is_plain_conv1d`; z: (batch, in_channels, length).
    """
    weight, bias = module.weight, module.bias
    if affine is not None:
        scale, shift = affine
        weight = weight * scale[:, None, None]
        bias = shift if bias is None else bias * scale + shift
    kernel, stride, dilation, padding = _geometry(module)
    if window is not None:
        length, (start, stop) = z.shape[-1], window
        low = start * stride - padding
        high = (stop - 1) * stride - padding + dilation * (kernel - 1) + 1
        if max(low, 0) >= min(high, length):  # the kept outputs read padding only
            return conv1d(module, z, None, affine)[..., start:stop]
        z = z[..., max(low, 0) : min(high, length)]
        if low < 0 or high > length:
            z = F.pad(z, (max(-low, 0), max(high - length, 0)))
        padding = 0
    if not _channels_last(module, z):
        return F.conv1d(z, weight, bias, stride, padding, dilation, module.groups)
    planes = z.unsqueeze(2).contiguous(memory_format=torch.channels_last)
    weight = weight.unsqueeze(2).contiguous(memory_format=torch.channels_last)
    output = F.conv2d(planes, weight, bias, (1, stride), (0, padding), (1, dilation), module.groups)
    return output.squeeze(2).contiguous()  # the usual layout: a later .view() must work as on module(z)


def _first(value: Any) -> int:
    return int(value[0]) if isinstance(value, (tuple, list)) else int(value)


def max_pool1d_with_indices(
    z: torch.Tensor,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    dilation: Any = 1,
    ceil_mode: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``F.max_pool1d(z, ..., return_indices=True)``: (values, indices), through a channels-last 2-D pooling on CPU."""
    if z.dim() != 3 or z.device.type != "cpu":
        return F.max_pool1d(z, kernel_size, stride, padding, dilation, ceil_mode=ceil_mode, return_indices=True)
    kernel = _first(kernel_size)
    step = kernel if stride is None or (isinstance(stride, (tuple, list)) and not stride) else _first(stride)
    planes = z.unsqueeze(2).contiguous(memory_format=torch.channels_last)
    values, indices = F.max_pool2d(
        planes, (1, kernel), (1, step), (0, _first(padding)), (1, _first(dilation)), ceil_mode, return_indices=True
    )
    return values.squeeze(2).contiguous(), indices.squeeze(2)  # the indices are only gathered and scattered
