"""Mean-field signal propagation: ReLU/tanh critical points, arc-cosine kernel, Monte-Carlo and wide-network checks."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from deepscope.errors import InvalidParameterError, UnsupportedModelError
from deepscope.expressivity import _meanfield, initialization_verdict, signal_propagation
from deepscope.expressivity.activations import critical_sigma_w


def test_relu_is_critical_at_sigma_w_squared_two():
    result = signal_propagation("relu", math.sqrt(2.0), 0.0, 5, width=0, edge_points=3)
    assert result.chi_1 == pytest.approx(1.0, abs=1e-9)  # chi_1 = sigma_w^2 / 2 exactly for ReLU
    assert result.phase == "critical" and result.xi_c == math.inf
    np.testing.assert_allclose(result.edge_sigma_w, math.sqrt(2.0), atol=1e-5)  # bisection to 1e-6
    assert signal_propagation("relu", 1.2, 0.0, 5, width=0, edge_points=0).phase == "ordered"
    assert signal_propagation("relu", 1.6, 0.0, 5, width=0, edge_points=0).phase == "chaotic"


def test_tanh_is_critical_at_sigma_w_one_without_bias():
    assert critical_sigma_w(torch.tanh, 0.0) == pytest.approx(1.0, abs=1e-5)
    # the edge of chaos moves to larger sigma_w as the bias grows (Poole et al. 2016, Fig. 2)
    edge = signal_propagation("tanh", 1.0, 0.0, 3, width=0, edge_points=4).edge_sigma_w
    assert all(b > a for a, b in zip(edge, edge[1:]))


def test_relu_correlation_map_is_the_arc_cosine_kernel():
    # Cho & Saul (2009): for ReLU at sigma_w^2 = 2, sigma_b = 0: c' = (sqrt(1 - c^2) + (pi - arccos c) c) / pi
    for c in (0.0, 0.3, 0.8, 0.99):
        _, _, following = _meanfield.correlation_map(torch.relu, 1.3, 1.3, c, math.sqrt(2.0), 0.0)
        exact = (math.sqrt(1 - c * c) + (math.pi - math.acos(c)) * c) / math.pi
        assert following == pytest.approx(exact, abs=1e-4)  # polar rule: trapezoid error across the kinks


def test_tanh_fixed_point_matches_monte_carlo():
    sigma_w, sigma_b = 1.8, 0.3
    result = signal_propagation("tanh", sigma_w, sigma_b, 3, width=0, edge_points=0)
    z = torch.randn(1_000_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    q = 1.0
    for _ in range(30):
        q = sigma_w**2 * float((torch.tanh(math.sqrt(q) * z) ** 2).mean()) + sigma_b**2
    # Monte-Carlo standard error of the mean of tanh^2 with 1e6 samples is ~3e-4; times sigma_w^2
    assert result.q_star == pytest.approx(q, abs=4 * 3e-4 * sigma_w**2)


def test_wide_network_matches_the_mean_field_prediction():
    result = signal_propagation("tanh", 1.5, 0.05, 6, width=1000, networks=3, edge_points=0)
    # finite width: per-layer fluctuations of q and c are O(1/sqrt(width)) ~ 0.03 and accumulate with depth
    np.testing.assert_allclose(result.measured_c, result.predicted_c, atol=0.08)
    np.testing.assert_allclose(result.measured_q, result.predicted_q, rtol=0.08)
    predicted, measured = result.predicted_gradient_ratio[0], result.measured_gradient_ratio[0]
    assert predicted > 1.5 and measured == pytest.approx(predicted, rel=0.2)  # chaotic: gradients grow
    assert result.plot() is not None
    assert len(result.rows()) == 7


def test_gradient_verdicts():
    assert signal_propagation("tanh", 0.8, 0.0, 30, width=0, edge_points=0).gradient_verdict == "vanishing"
    assert signal_propagation("tanh", 3.0, 0.0, 30, width=0, edge_points=0).gradient_verdict == "exploding"


def test_initialization_verdict_reads_the_weight_scale():
    torch.manual_seed(0)
    layers = []
    for _ in range(3):
        linear = nn.Linear(200, 200)
        nn.init.kaiming_normal_(linear.weight, nonlinearity="relu")
        nn.init.zeros_(linear.bias)
        layers += [linear, nn.ReLU()]
    result = initialization_verdict(nn.Sequential(*layers), width=64, edge_points=0)
    # He initialisation: sigma_w^2 = 2 up to the sampling error of Var(W) over 40 000 weights (~1 %)
    assert result.sigma_w**2 == pytest.approx(2.0, rel=0.03)
    assert result.chi_1 == pytest.approx(1.0, rel=0.03)
    with pytest.raises(UnsupportedModelError):
        initialization_verdict(nn.Sequential(nn.Linear(2, 2), nn.Softsign()))


def test_bad_parameters():
    with pytest.raises(InvalidParameterError, match="sigma_w"):
        signal_propagation("tanh", 0.0, 0.0, 3)
    with pytest.raises(InvalidParameterError, match="sigma_w"):
        signal_propagation("tanh", -1.0, 0.0, 3)
    with pytest.raises(InvalidParameterError, match="activation"):
        signal_propagation("swish2", 1.0, 0.0, 3)
    with pytest.raises(InvalidParameterError, match="depth"):
        signal_propagation("relu", 1.0, 0.0, 0)


def test_initialization_verdict_refuses_models_outside_the_chain_theory():
    # a transformer layer (attention + LayerNorm), an embedding and a tanh "pooler" after GELU:
    # the verdict used to read the first activation it met and judge the model as a tanh chain
    from deepscope.errors import UnsupportedModelError

    encoder = nn.Sequential(nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), nn.Linear(8, 8), nn.Tanh())
    with pytest.raises(UnsupportedModelError, match=r"this model has LayerNorm and attention, for which"):
        initialization_verdict(encoder, width=8, edge_points=0)
    with pytest.raises(UnsupportedModelError, match=r"this model has embeddings, for which"):
        initialization_verdict(nn.Sequential(nn.Embedding(5, 4), nn.Linear(4, 4), nn.ReLU()), width=8, edge_points=0)
    mixed = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4), nn.Tanh())
    with pytest.raises(UnsupportedModelError, match=r"several activations \(relu, tanh\)"):
        initialization_verdict(mixed, width=8, edge_points=0)
