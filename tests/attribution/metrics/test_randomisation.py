import math

import pytest
import torch
from scipy.stats import spearmanr

from deepscope.attribution.metrics import model_parameter_randomisation, structural_similarity
from deepscope.errors import DeepscopeError
from deepscope.testing import check_model_untouched


def test_spearman_per_layer_matches_scipy_on_the_recorded_maps(cnn_and_images):
    model, x = cnn_and_images
    recorded = []

    def recording_saliency(net, inputs, target=None):
        from deepscope.attribution import saliency

        values = saliency(net, inputs, target=target).values
        recorded.append(values)
        return values

    check = model_parameter_randomisation(model, x, 1, method=recording_saliency)
    assert check.layers == ["6", "4", "0"]  # modules owning parameters, output first
    assert len(recorded) == 4
    original = recorded[0]
    for step in range(3):
        for i in range(len(x)):
            reference = spearmanr(recorded[step + 1][i].reshape(-1).abs(), original[i].reshape(-1).abs())[0]
            assert check.spearman[step, i].item() == pytest.approx(reference, abs=1e-10)


def test_saliency_passes_and_an_input_only_map_fails(cnn_and_images):
    model, x = cnn_and_images
    saliency_check = check_model_untouched(model_parameter_randomisation, model, model, x, 0, ssim=True)
    assert saliency_check.passed, saliency_check.mean_spearman
    assert saliency_check.ssim.shape == (3, 5)

    def edge_detector(net, inputs, target=None):  # ignores the model entirely
        return inputs - inputs.roll(1, dims=-1)

    fake = model_parameter_randomisation(model, x, 0, method=edge_detector, ssim=True)
    assert not fake.passed
    torch.testing.assert_close(fake.spearman, torch.ones_like(fake.spearman))
    torch.testing.assert_close(fake.ssim, torch.ones_like(fake.ssim))
    assert "failed" in fake.verdict and len(fake.rows()) == 3


def test_structural_similarity_properties():
    generator = torch.Generator().manual_seed(0)
    a = torch.rand(3, 10, 10, generator=generator, dtype=torch.float64)
    b = torch.rand(3, 10, 10, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(structural_similarity(a, a), torch.ones(3, dtype=torch.float64))
    torch.testing.assert_close(structural_similarity(a, b), structural_similarity(b, a))
    assert (structural_similarity(a, b) < 0.5).all()
    # a single 7x7 window by hand: the global SSIM formula with sample statistics
    p, q = a[:1, :7, :7], b[:1, :7, :7]
    mp, mq = p.mean(), q.mean()
    vp, vq = p.var(), q.var()
    cov = ((p - mp) * (q - mq)).sum() / 48
    c1, c2 = 0.01**2, 0.03**2
    expected = (2 * mp * mq + c1) * (2 * cov + c2) / ((mp**2 + mq**2 + c1) * (vp + vq + c2))
    assert structural_similarity(p, q).item() == pytest.approx(expected.item(), rel=1e-10)


def test_named_layers_and_bad_arguments(cnn_and_images):
    model, x = cnn_and_images
    check = model_parameter_randomisation(model, x, 0, layers=["6"], seed=3)
    assert check.layers == ["6"] and check.spearman.shape == (1, 5)
    with pytest.raises(DeepscopeError, match="layers"):
        model_parameter_randomisation(model, x, layers=["nope"])
    with pytest.raises(DeepscopeError, match="ssim"):
        model_parameter_randomisation(torch.nn.Linear(3, 2), torch.randn(2, 3), ssim=True)
    with pytest.raises(DeepscopeError, match="threshold"):
        model_parameter_randomisation(model, x, threshold=2.0)


def test_sum_channels_compares_per_position_maps():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv1d(4, 3, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(18, 2))
    x = torch.nn.functional.one_hot(torch.randint(0, 4, (6, 8)), 4).permute(0, 2, 1).float()
    recorded = []

    def recording_input_x_gradient(net, inputs, target=None):
        from deepscope.attribution import input_x_gradient

        recorded.append(input_x_gradient(net, inputs, target=target).values)
        return recorded[-1]

    check = model_parameter_randomisation(model, x, 1, method=recording_input_x_gradient, sum_channels=True)
    for step in range(len(check.layers)):
        for i in range(6):
            ours = check.spearman[step, i].item()
            reference = spearmanr(recorded[step + 1][i].abs().sum(0), recorded[0][i].abs().sum(0))[0]
            assert ours == pytest.approx(reference, abs=1e-10) or (math.isnan(ours) and math.isnan(reference))
