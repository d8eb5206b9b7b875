"""Oracles: the power-law MLE against WeightWatcher 0.7.7's own fitter (when installed) and the
closed-form MLE on synthetic Pareto samples; the fit-quality flag on small layers."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from deepscope.errors import UnsupportedModelError
from deepscope.generalization.measures.spectral import fit_power_law, spectral_metrics


def test_power_law_alpha_on_pareto_samples():
    rng = np.random.default_rng(0)
    samples = (1 - rng.random(4000)) ** (-1 / (3.0 - 1))  # Pareto with alpha = 3, xmin = 1
    alpha, xmin, distance, tail = fit_power_law(samples)
    closed_form = 1 + len(samples) / np.log(samples / samples.min()).sum()
    # with xmin chosen by KS the estimate moves a little; s.e. of alpha is (alpha-1)/sqrt(n) ≈ 0.03
    assert alpha == pytest.approx(3.0, abs=0.15)
    assert closed_form == pytest.approx(3.0, abs=0.1)
    assert distance < 0.05 and tail > 100


def test_fit_matches_weightwatcher_fitter():
    ww_powerlaw = pytest.importorskip("weightwatcher.WW_powerlaw")
    rng = np.random.default_rng(1)
    matrix = rng.standard_t(3, size=(300, 200))
    eigenvalues = np.linalg.eigvalsh(matrix.T @ matrix / 300)
    fit = ww_powerlaw.WWFit(eigenvalues[eigenvalues > 0])
    alpha, xmin, distance, _ = fit_power_law(eigenvalues)
    assert alpha == pytest.approx(fit.alpha, rel=1e-9)  # same estimator, same xmin search
    assert xmin == pytest.approx(fit.xmin, rel=1e-12)


def test_layer_metrics_and_flags():
    torch.manual_seed(0)
    big = nn.Linear(256, 128)
    with torch.no_grad():
        big.weight.copy_(torch.from_numpy(np.random.default_rng(2).standard_t(2.5, size=(128, 256))).float())
    model = nn.Sequential(big, nn.ReLU(), nn.Linear(128, 3), nn.LayerNorm(3))
    result = spectral_metrics(model)
    first, small = result.layers
    eig = torch.linalg.svdvals(big.weight.detach().double()) ** 2
    assert first.log_spectral_norm == pytest.approx(math.log10(float(eig.max())), rel=1e-9)
    assert first.stable_rank == pytest.approx(float(eig.sum() / eig.max()), rel=1e-9)
    assert first.fit_quality == "ok" and math.isfinite(first.alpha)
    assert small.fit_quality == "too_few_eigenvalues" and math.isnan(small.alpha)  # only 3 eigenvalues
    assert result.unsupported_layers == ["3 (LayerNorm)"]
    assert result.valid_layers == 1


def test_model_without_weight_layers_is_refused():
    with pytest.raises(UnsupportedModelError, match="Linear or Conv"):
        spectral_metrics(nn.Sequential(nn.LayerNorm(3)))
