"""Oracle: the largest singular value of the explicit (dense) convolution matrix."""

import pytest
import torch
from torch import nn

from deepscope.generalization._measures._layers import conv_operator_spectral_norm


def _dense_conv_matrix(conv, input_shape):
    n = int(torch.tensor(input_shape).prod())
    basis = torch.eye(n, dtype=torch.float64).reshape(n, *input_shape)
    with torch.no_grad():
        columns = conv._conv_forward(basis, conv.weight.double(), None).reshape(n, -1)
    return columns.T  # (outputs, inputs)


@pytest.mark.parametrize(
    "make_conv,input_shape",
    [
        (lambda: nn.Conv2d(2, 3, 3, padding=1), (2, 6, 6)),
        (lambda: nn.Conv2d(2, 4, 3, stride=2), (2, 7, 7)),
        (lambda: nn.Conv1d(3, 2, 5, padding=2, dilation=2), (3, 12)),
        (lambda: nn.Conv2d(2, 2, 3, padding=1, padding_mode="circular"), (2, 5, 5)),
    ],
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_operator_norm_matches_dense_matrix(make_conv, input_shape, seed):
    torch.manual_seed(seed)
    conv = make_conv().double()
    dense = _dense_conv_matrix(conv, input_shape)
    expected = float(torch.linalg.matrix_norm(dense, ord=2))
    sigma, used = conv_operator_spectral_norm(conv, conv.weight.detach(), input_shape, iterations=5000, tolerance=1e-9)
    # stopping at residual r = 1e-9·σ² bounds the error in σ² by about r²/gap, far below 1e-6 relative
    assert sigma == pytest.approx(expected, rel=1e-6)
    assert used >= 1
    kernel_norm = float(torch.linalg.matrix_norm(conv.weight.detach().reshape(conv.out_channels, -1), ord=2))
    assert abs(sigma - kernel_norm) > 1e-3  # the operator norm is not the reshaped kernel's norm
