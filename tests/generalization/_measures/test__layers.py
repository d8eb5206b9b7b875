"""Oracle: the largest singular value of the explicit (dense) convolution matrix."""

import math

import pytest
import torch
from torch import nn

from deepscope.generalization._measures._layers import OperatorNorm, conv_operator_spectral_norm


def _dense_conv_matrix(conv, input_shape, weight=None):
    n = int(torch.tensor(input_shape).prod())
    basis = torch.eye(n, dtype=torch.float64).reshape(n, *input_shape)
    weight = conv.weight if weight is None else weight
    with torch.no_grad():
        columns = conv._conv_forward(basis, weight.double(), None).reshape(n, -1)
    return columns.T  # (outputs, inputs)


def _exact(conv, input_shape, weight=None):
    return float(torch.linalg.matrix_norm(_dense_conv_matrix(conv, input_shape, weight), ord=2))


CONVS = [
    (lambda: nn.Conv2d(2, 3, 3, padding=1), (2, 6, 6)),
    (lambda: nn.Conv2d(2, 4, 3, stride=2), (2, 7, 7)),
    (lambda: nn.Conv1d(3, 2, 5, padding=2, dilation=2), (3, 12)),
    (lambda: nn.Conv2d(2, 2, 3, padding=1, padding_mode="circular"), (2, 5, 5)),
    (lambda: nn.Conv2d(4, 8, 3, padding=1, groups=2), (4, 8, 8)),
]


@pytest.mark.parametrize("make_conv,input_shape", CONVS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_operator_norm_matches_dense_matrix(make_conv, input_shape, seed):
    torch.manual_seed(seed)
    conv = make_conv()  # float32 weights, as a trained model has them: the operator runs in float64
    expected = _exact(conv, input_shape)
    norm = conv_operator_spectral_norm(conv, conv.weight.detach(), input_shape)
    assert isinstance(norm, OperatorNorm) and norm.converged and norm.iterations >= 1
    # default tolerance 1e-6: σ² within r <= 1e-6 σ² of an eigenvalue, i.e. σ within 5e-7 relative, plus
    # the float32 rounding of the convolutions (eps32 = 1.2e-7, folded into the reported bound)
    eps32 = torch.finfo(torch.float32).eps
    assert norm.sigma == pytest.approx(expected, rel=5e-7 + eps32)
    assert abs(norm.sigma - expected) / expected <= norm.error_bound
    assert eps32 <= norm.error_bound <= 5e-7 + eps32
    kernel_norm = float(torch.linalg.matrix_norm(conv.weight.detach().reshape(conv.out_channels, -1), ord=2))
    assert abs(norm.sigma - kernel_norm) > 1e-3  # the operator norm is not the reshaped kernel's norm


def test_close_top_singular_values_are_resolved():
    # a zero-padded conv whose two largest singular values differ by 0.03% (as on the trained typical
    # CNN): a circular conv's spectrum, nearly kept by zero padding, is degenerate in pairs ±frequency
    torch.manual_seed(0)
    conv = nn.Conv2d(16, 32, 3, padding=1).double()  # float64: the algorithm's accuracy, not float32's
    shape = (16, 8, 8)
    singular = torch.linalg.svdvals(_dense_conv_matrix(conv, shape))
    gap = float(1 - singular[1] / singular[0])
    assert gap < 0.01  # the hard case: a small relative gap at the top
    norm = conv_operator_spectral_norm(conv, conv.weight.detach(), shape)
    assert norm.converged
    # tolerance 1e-6 guarantees 5e-7 of SOME singular value; resolving the top one puts it far closer
    assert norm.sigma == pytest.approx(float(singular[0]), rel=1e-9)
    tight = conv_operator_spectral_norm(conv, conv.weight.detach(), shape, tolerance=1e-12)
    assert tight.sigma == pytest.approx(float(singular[0]), rel=1e-12) and tight.iterations > norm.iterations


def test_a_small_input_space_is_exhausted_exactly():
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 3, 2).double()  # float64 weights: no rounding term in the bound
    norm = conv_operator_spectral_norm(conv, conv.weight.detach(), (1, 3, 3), tolerance=0.0)
    # 9 input dimensions: after at most 9 steps the Krylov space is the whole space, θ = λ_max exactly
    assert norm.iterations <= 9 and norm.converged and norm.error_bound == 0.0
    assert norm.sigma == pytest.approx(_exact(conv, (1, 3, 3)), rel=1e-12)


def test_the_iteration_cap_reports_no_convergence_and_a_lower_bound():
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 8, 3, padding=1)
    shape = (8, 8, 8)
    exact = _exact(conv, shape)
    norm = conv_operator_spectral_norm(conv, conv.weight.detach(), shape, iterations=3)
    assert norm.iterations == 3 and not norm.converged and norm.error_bound > 5e-7
    assert norm.sigma <= exact * (1 + 1e-12)  # a Ritz value never exceeds λ_max (rounding aside)


def test_zero_and_non_finite_kernels():
    conv = nn.Conv2d(2, 2, 3)
    zero = conv_operator_spectral_norm(conv, torch.zeros_like(conv.weight), (2, 5, 5))
    assert zero == OperatorNorm(0.0, 1, True, 0.0)
    weight = conv.weight.detach().clone()
    weight[0, 0, 0, 0] = math.inf
    broken = conv_operator_spectral_norm(conv, weight, (2, 5, 5))
    assert math.isnan(broken.sigma) and not broken.converged


@pytest.mark.parametrize("make_conv,input_shape", CONVS)
def test_the_three_term_recurrence_of_large_inputs_agrees(make_conv, input_shape, monkeypatch):
    import deepscope.generalization._measures._layers as layers

    monkeypatch.setattr(layers, "_FULL_REORTHOGONALISATION", 1)  # as for inputs over 4096 entries
    torch.manual_seed(0)
    conv = make_conv().double()
    expected = _exact(conv, input_shape)
    norm = conv_operator_spectral_norm(conv, conv.weight.detach(), input_shape)
    # without full reorthogonalisation a converged Ritz value is still within r of an eigenvalue (Paige 1980)
    assert norm.converged and abs(norm.sigma - expected) / expected <= norm.error_bound <= 5e-7
