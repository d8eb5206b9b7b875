import pytest
import torch
from torch import nn

from deepscope.curvature.ntk_dynamics import ntk_dynamics
from deepscope.errors import InvalidParameterError


def test_linear_model_follows_its_linearisation_exactly_and_its_kernel_does_not_drift():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(12, 4, generator=generator, dtype=torch.float64)
    y = torch.randn(12, 2, generator=generator, dtype=torch.float64)
    model = nn.Linear(4, 2).double()
    result = ntk_dynamics(model, x, y, lr=0.1, steps=30, n_checkpoints=3)
    # a linear model is its own linearisation: the two curves agree to float64 rounding
    torch.testing.assert_close(
        torch.tensor(result.predicted_loss), torch.tensor(result.actual_loss), rtol=1e-10, atol=1e-14
    )
    assert max(result.kernel_drift) == pytest.approx(0.0, abs=1e-12)
    assert result.actual_loss[-1] < result.actual_loss[0]
    assert result.drift_steps == [0, 10, 20, 30]


class NTKTanh(nn.Module):
    """Two-layer tanh net in the NTK parameterisation: f = V tanh(Wx) / √width (kernel O(1) in width)."""

    def __init__(self, d: int, width: int):
        super().__init__()
        self.w = nn.Parameter(torch.randn(width, d, dtype=torch.float64))
        self.v = nn.Parameter(torch.randn(2, width, dtype=torch.float64))

    def forward(self, x):
        return torch.tanh(x @ self.w.T) @ self.v.T / self.w.shape[0] ** 0.5


def test_wide_network_drifts_less_than_a_narrow_one():
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(10, 3, generator=generator, dtype=torch.float64)
    labels = torch.tensor([0, 1] * 5)
    drifts = []
    for width in (4, 256):
        torch.manual_seed(0)
        result = ntk_dynamics(NTKTanh(3, width), x, labels, lr=0.5, steps=40, n_checkpoints=1)
        drifts.append(result.kernel_drift[-1])
    # lazy training (Chizat et al., 2019): relative kernel change shrinks with width (~1/√width)
    assert drifts[1] < drifts[0] / 3
    assert result.plot() is not None and result.rows()[-1]["step"] == 40


def test_targets_are_required():
    with pytest.raises(InvalidParameterError, match="'targets' parameter of ntk_dynamics"):
        ntk_dynamics(nn.Linear(2, 1), torch.randn(4, 2))
