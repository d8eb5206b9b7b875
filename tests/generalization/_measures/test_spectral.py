"""Oracles: the power-law MLE against WeightWatcher 0.7.7's own fitter (when installed) and the
closed-form MLE on synthetic Pareto samples; the fit-quality flag on small layers."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from deepscope.errors import UnsupportedModelError
from deepscope.generalization._measures import spectral as spectral_module
from deepscope.generalization._measures.spectral import fit_power_law, spectral_metrics


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
    assert math.isnan(small.alpha_fitted) and small.tail_size == 0  # not fitted below min_eigenvalues ...
    assert math.isfinite(small.stable_rank) and small.num_eigenvalues == 3  # ... the norms are still there
    raw = spectral_metrics(model, min_eigenvalues=3).layers[1]  # ... and a smaller threshold fits it
    expected = fit_power_law(spectral_module._eigenvalues(model[2].weight))
    assert (raw.alpha_fitted, raw.xmin, raw.ks_distance, raw.tail_size) == expected and expected[3] > 0
    assert result.unsupported_layers == ["3 (LayerNorm)"]
    assert result.valid_layers == 1


def test_model_without_weight_layers_is_refused():
    with pytest.raises(UnsupportedModelError, match="Linear or Conv"):
        spectral_metrics(nn.Sequential(nn.LayerNorm(3)))


def _loop_fit(values):
    """The per-candidate loop of WeightWatcher 0.7 (``WWFit.fit_power_law_standard``), written out."""
    data = np.sort(values[values > 0])
    best = (math.inf, math.nan, math.nan, 0)
    for i in range(len(data) - 1):
        n = len(data) - i
        alpha = 1 + n / np.sum(np.log(data[i:] / data[i]))
        if not (np.isfinite(alpha) and alpha > 1):
            continue
        distance = np.max(np.abs(1 - (data[i:] / data[i]) ** (1 - alpha) - np.arange(n) / n))
        if distance < best[0]:
            best = (distance, alpha, data[i], n)
    return best[1], best[2], best[0], best[3]


@pytest.mark.parametrize("max_elements", [1 << 20, 50, 1])  # one block, many blocks, one row at a time
def test_vectorised_fit_equals_the_loop(max_elements):
    rng = np.random.default_rng(3)
    for _ in range(12):
        matrix = rng.standard_t(rng.uniform(1.5, 6.0), size=(int(rng.integers(5, 200)), int(rng.integers(3, 150))))
        values = np.linalg.svd(matrix, compute_uv=False) ** 2
        got, want = fit_power_law(values, max_elements=max_elements), _loop_fit(values)
        # same candidates and estimator; only summation order / exp-of-log vs power differ (float64 round-off),
        # which moves alpha and D by ~1e-15 relative and cannot change which xmin wins here
        assert got[1] == want[1] and got[3] == want[3]
        assert got[0] == pytest.approx(want[0], rel=1e-12)
        assert got[2] == pytest.approx(want[2], rel=1e-12)


def test_fit_degenerate_inputs():
    assert math.isnan(fit_power_law(np.array([2.0]))[0])  # fewer than two positive values
    alpha, xmin, distance, tail = fit_power_law(np.ones(10))  # every tail degenerate: no alpha > 1
    assert math.isnan(alpha) and math.isnan(xmin) and distance == math.inf and tail == 0
    with_zeros = fit_power_law(np.r_[np.zeros(4), np.arange(1.0, 60.0) ** 3])
    assert with_zeros == fit_power_law(np.arange(1.0, 60.0) ** 3)  # non-positive values are dropped


def test_conv_eigenvalues_pool_the_spatial_slices():
    torch.manual_seed(1)
    conv = nn.Conv2d(6, 11, kernel_size=(2, 3))
    result = spectral_metrics(nn.Sequential(conv), min_eigenvalues=1).layers[0]
    weight = conv.weight.detach().double()
    pooled = torch.cat([torch.linalg.svdvals(weight[:, :, i, j]) ** 2 for i in range(2) for j in range(3)])
    assert result.num_eigenvalues == 6 * 6  # min(11, 6) per slice, 6 slices
    assert result.log_spectral_norm == pytest.approx(math.log10(float(pooled.max())), rel=1e-12)
    assert result.stable_rank == pytest.approx(float(pooled.sum() / pooled.max()), rel=1e-12)


def test_branch_and_bound_fit_equals_the_whole_triangle(monkeypatch):
    """Above ``_PRUNE_ABOVE`` values most candidates are pruned by a lower bound on D; the result must be
    exactly (bit for bit) that of evaluating every candidate, ties in D and in the values included."""
    rng = np.random.default_rng(7)
    spectra = []
    for trial in range(40):
        n = int(rng.integers(81, 400))
        if trial % 4 == 0:
            spectra.append(np.linalg.svd(rng.standard_t(rng.uniform(1.5, 6), size=(2 * n, n)), compute_uv=False) ** 2)
        elif trial % 4 == 1:
            spectra.append(np.linalg.svd(rng.standard_normal((n + 5, n)), compute_uv=False) ** 2)
        elif trial % 4 == 2:
            spectra.append(rng.pareto(rng.uniform(0.5, 4), n) + 1e-3)
        else:
            spectra.append(np.round(rng.exponential(1.0, n), 1) + 0.1)  # many ties
    pruned = [fit_power_law(values) for values in spectra]
    monkeypatch.setattr(spectral_module, "_PRUNE_ABOVE", 10**9)
    assert pruned == [fit_power_law(values) for values in spectra]
    assert pruned[0] == fit_power_law(spectra[0], max_elements=100)  # tiny blocks: same answer


@pytest.mark.parametrize("layer", [nn.Linear(64, 80), nn.Conv2d(16, 32, 3)])
def test_non_finite_weights_get_a_clear_error(layer):
    with torch.no_grad():
        layer.weight.view(-1)[5] = float("nan")
    with pytest.raises(UnsupportedModelError, match="layer '0' has NaN or infinite entries"):
        spectral_metrics(nn.Sequential(layer))


def test_plot_marks_layers_that_were_not_fitted():
    import matplotlib

    matplotlib.use("Agg")
    model = nn.Sequential(nn.Linear(200, 100), nn.ReLU(), nn.Linear(100, 4))
    figure = spectral_metrics(model).plot()
    assert [text.get_text() for text in figure.axes[0].texts] == ["not fitted\n(4 eig.)"]
