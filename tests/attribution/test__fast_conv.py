"""The windowed / channels-last 1-D convolution equals the module's output sliced, values and input gradients."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from deepscope.attribution._fast_conv import (
    CHANNELS_LAST_MAX_OUT,
    CHANNELS_LAST_MIN_FAN_IN,
    _channels_last,
    batch_norm_affine,
    conv1d,
    is_foldable_batch_norm,
    is_plain_conv1d,
    max_pool1d_with_indices,
    output_window,
)

# Tolerance: float64, the same products summed in another order (a window, a 2-D kernel); the values are
# O(10) with ~40-2000 terms each, so rounding differences are ~1e-14; 1e-11 leaves room for nothing else.
_CLOSE = {"rtol": 0.0, "atol": 1e-11}


def _conv(channels_in, channels_out, kernel, **options) -> nn.Conv1d:
    torch.manual_seed(0)
    return nn.Conv1d(channels_in, channels_out, kernel, **options).double()


@pytest.mark.parametrize(
    ("kernel", "stride", "dilation", "padding", "index"),
    [
        (5, 1, 1, 2, slice(3, -3)),
        (75, 1, 1, 37, slice(77, 173)),  # bpnet-lite's profile convolution and trimming
        (3, 2, 2, 4, slice(1, None)),
        (4, 3, 1, 0, slice(None, 5)),
        (7, 1, 3, 9, slice(0, 2)),  # the kept outputs read the left padding
        (7, 1, 3, 9, slice(-2, None)),  # ... and the right padding
        (9, 1, 1, 20, slice(0, 3)),  # ... and the padding only
    ],
)
def test_the_window_equals_the_sliced_output(kernel, stride, dilation, padding, index):
    for channels_in in (3, 40):  # the 1-D and (fan-in >= 256 for the wide kernels) the channels-last path
        module = _conv(channels_in, 2, kernel, stride=stride, dilation=dilation, padding=padding)
        z = torch.randn(4, channels_in, 250, dtype=torch.float64, requires_grad=True)
        full = module(z)
        window = output_window((slice(None), slice(None), index), module, z)
        assert window is not None
        got = conv1d(module, z, window)
        torch.testing.assert_close(got, full[..., index], **_CLOSE)
        upstream = torch.randn_like(got)
        (expected,) = torch.autograd.grad(full[..., index], z, upstream)
        (grad,) = torch.autograd.grad(got, z, upstream)
        torch.testing.assert_close(grad, expected, **_CLOSE)


def test_channels_last_keeps_values_gradients_groups_and_the_usual_layout():
    fan_in = CHANNELS_LAST_MIN_FAN_IN
    for groups, (stride, dilation, padding) in itertools.product((1, 2), ((1, 1, 0), (2, 3, 5))):
        module = _conv(8, 4, fan_in * groups // 8, stride=stride, dilation=dilation, padding=padding, groups=groups)
        z = torch.randn(3, 8, 300, dtype=torch.float64, requires_grad=True)
        assert _channels_last(module, z)
        got = conv1d(module, z)
        assert got.is_contiguous()  # a later .view() works as on module(z)
        torch.testing.assert_close(got, module(z), **_CLOSE)
        upstream = torch.randn_like(got)
        torch.testing.assert_close(
            torch.autograd.grad(got, z, upstream)[0], torch.autograd.grad(module(z), z, upstream)[0], **_CLOSE
        )


@pytest.mark.parametrize(
    "index",
    [
        (slice(None), slice(None), slice(0, 10, 2)),  # a step
        (slice(None), slice(0, 1), slice(0, 10)),  # channels sliced too
        (slice(None), slice(None), 3),  # one position
        (slice(None), slice(None), slice(5, 5)),  # empty
        (slice(None), slice(None), slice(True, 5)),
        (slice(None), slice(None), slice(0.5, 5)),
        slice(0, 3),  # the batch axis
    ],
)
def test_other_indices_are_not_windows(index):
    module = _conv(3, 2, 5)
    assert output_window(index, module, torch.zeros(2, 3, 20, dtype=torch.float64)) is None


def test_the_layout_is_changed_only_for_few_outputs_and_a_wide_fan_in():
    z = torch.zeros(2, 32, 50)
    assert _channels_last(nn.Conv1d(32, 2, CHANNELS_LAST_MIN_FAN_IN // 32), z)
    assert not _channels_last(nn.Conv1d(32, 2, CHANNELS_LAST_MIN_FAN_IN // 32 - 1), z)
    assert not _channels_last(nn.Conv1d(32, CHANNELS_LAST_MAX_OUT + 1, 75), z)
    assert not _channels_last(nn.Conv1d(32, 2, 75), z[0])  # unbatched


def test_only_plain_zero_padded_convolutions_are_rewritten():
    class Shifted(nn.Conv1d):
        def forward(self, z):
            return super().forward(z) + 1.0

    assert is_plain_conv1d(nn.Conv1d(2, 2, 3, padding=1))
    assert not is_plain_conv1d(nn.Conv1d(2, 2, 3, padding=1, padding_mode="circular"))
    assert not is_plain_conv1d(nn.Conv1d(2, 2, 3, padding="same"))
    assert not is_plain_conv1d(Shifted(2, 2, 3))
    assert not is_plain_conv1d(nn.Conv2d(2, 2, 3))
    hooked = nn.Conv1d(2, 2, 3)
    handle = hooked.register_forward_pre_hook(lambda module, inputs: None)  # e.g. the old weight_norm
    assert not is_plain_conv1d(hooked)
    handle.remove()
    assert is_plain_conv1d(hooked)
    handle = nn.modules.module.register_module_forward_hook(lambda module, inputs, output: None)
    try:
        assert not is_plain_conv1d(hooked)
    finally:
        handle.remove()


@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "dilation", "ceil_mode"),
    [
        (3, None, 0, 1, False),
        (4, 4, 0, 1, False),
        (3, 2, 1, 1, True),
        (5, 1, 2, 2, False),
        ((3,), (2,), (1,), (1,), False),
    ],
)
def test_max_pooling_with_indices_equals_torchs_ties_and_nan_included(kernel, stride, padding, dilation, ceil_mode):
    z = torch.randn(6, 5, 61, generator=torch.Generator().manual_seed(0)).relu()  # ReLU zeros: tied windows
    z[0, 0] = 0.0
    z[1, 1, ::3] = float("nan")
    expected = F.max_pool1d(z, kernel, stride, padding, dilation, ceil_mode=ceil_mode, return_indices=True)
    values, indices = max_pool1d_with_indices(z, kernel, stride, padding, dilation, ceil_mode)
    assert torch.equal(indices, expected[1])  # the same winner (the first maximum) in every window
    torch.testing.assert_close(values, expected[0], rtol=0, atol=0, equal_nan=True)
    assert values.is_contiguous()


@pytest.mark.parametrize("affine", [True, False])
def test_a_folded_batch_norm_equals_the_normalised_convolution(affine):
    module, normalisation = _conv(40, 3, 9, padding=4), nn.BatchNorm1d(3, affine=affine).double()
    with torch.no_grad():  # statistics and parameters away from their initial 0 / 1
        normalisation.running_mean.uniform_(-1, 1), normalisation.running_var.uniform_(0.5, 2)
        if affine:
            normalisation.weight.uniform_(-2, 2), normalisation.bias.uniform_(-1, 1)
    normalisation.eval()
    assert is_foldable_batch_norm(normalisation)
    z = torch.randn(4, 40, 60, dtype=torch.float64, requires_grad=True)
    folded = batch_norm_affine(normalisation)
    for window in (None, (5, 50)):
        got = conv1d(module, z, window, folded)
        expected = normalisation(module(z))[..., slice(*window) if window else slice(None)]
        torch.testing.assert_close(got, expected, **_CLOSE)
        upstream = torch.randn_like(got)
        torch.testing.assert_close(
            torch.autograd.grad(got, z, upstream)[0], torch.autograd.grad(expected, z, upstream)[0], **_CLOSE
        )
    normalisation.train()
    assert not is_foldable_batch_norm(normalisation)  # batch statistics
    assert not is_foldable_batch_norm(nn.BatchNorm1d(3, track_running_stats=False).eval())
    assert not is_foldable_batch_norm(nn.BatchNorm2d(3).eval())
