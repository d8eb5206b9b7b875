import math

import pytest
import torch
from scipy.stats import pearsonr

from deepscope.attribution.metrics import deletion_curve, faithfulness_correlation, insertion_curve
from deepscope.errors import DeepscopeError


def _three_feature_model():
    net = torch.nn.Linear(3, 2).double()
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]))
        net.bias.zero_()
    return net


def test_deletion_and_insertion_match_hand_computed_curves():
    # logit of class 0 = x0 + x1 + x2 with x = (3, 1, 2); order by attribution = features 0, 2, 1.
    net, x = _three_feature_model(), torch.tensor([[3.0, 1.0, 2.0]], dtype=torch.float64)
    deletion = deletion_curve(net, x, 0, attributions=x, step_fraction=1 / 3, output="logit")
    insertion = insertion_curve(net, x, 0, attributions=x, step_fraction=1 / 3, output="logit")
    torch.testing.assert_close(deletion.fractions, torch.tensor([0, 1 / 3, 2 / 3, 1], dtype=torch.float64))
    torch.testing.assert_close(deletion.curves[0], torch.tensor([6.0, 3.0, 1.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(insertion.curves[0], torch.tensor([0.0, 3.0, 5.0, 6.0], dtype=torch.float64))
    # trapezoid by hand: (1/3) * ((6+3)/2 + (3+1)/2 + (1+0)/2) = 7/3, and 11/3 for insertion
    assert deletion.mean_auc == pytest.approx(7 / 3, rel=1e-12)
    assert insertion.mean_auc == pytest.approx(11 / 3, rel=1e-12)


def test_probability_output_and_baseline_tensor():
    net, x = _three_feature_model(), torch.tensor([[3.0, 1.0, 2.0]], dtype=torch.float64)
    baseline = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64)
    curve = deletion_curve(net, x, 0, attributions=x, baseline=baseline, step_fraction=0.5)
    # counts: round(0), round(1.5)=2, 3 -> logits 6, 1+1+1... replaced features 0 and 2 by 1: 1+1+1 = 3, then 3
    logits = torch.tensor([6.0, 3.0, 3.0], dtype=torch.float64)
    expected = torch.sigmoid(logits)  # softmax over (l, 0) of class 0
    torch.testing.assert_close(curve.curves[0], expected)
    assert curve.model_evaluations == 1 + 3


def test_good_attributions_beat_reversed_ones(cnn_and_images):
    model, x = cnn_and_images
    good = deletion_curve(model, x, 0, attributions="input_x_gradient", step_fraction=0.1, output="logit")
    from deepscope.attribution import input_x_gradient

    reversed_ = -input_x_gradient(model, x, 0).values
    bad = deletion_curve(model, x, 0, attributions=reversed_, step_fraction=0.1, output="logit")
    assert good.mean_auc < bad.mean_auc
    assert good.curves.shape == (5, 11) and math.isfinite(good.standard_error)


def test_chunking_does_not_change_curves(cnn_and_images):
    model, x = cnn_and_images
    a = torch.rand_like(x)
    one = insertion_curve(model, x, attributions=a, step_fraction=0.2)
    chunked = insertion_curve(model, x, attributions=a, step_fraction=0.2, max_batch=7)
    torch.testing.assert_close(one.curves, chunked.curves, rtol=1e-12, atol=1e-12)


def test_faithfulness_correlation_is_one_for_true_linear_contributions(linear_model):
    x = torch.randn(4, 6, dtype=torch.float64)
    baseline = torch.randn(6, dtype=torch.float64)
    contributions = linear_model.weight[1].detach() * (x - baseline)
    result = faithfulness_correlation(
        linear_model, x, 1, attributions=contributions, baseline=baseline, subset_size=3, n_samples=20
    )
    torch.testing.assert_close(result.correlations, torch.ones(4, dtype=torch.float64))  # exact up to rounding
    negated = faithfulness_correlation(
        linear_model, x, 1, attributions=-contributions, baseline=baseline, subset_size=3
    )
    assert negated.mean == pytest.approx(-1.0, abs=1e-12)
    assert result.model_evaluations == 1 + 4 + 4 * 20  # one-row probe (explicit target), F(x), 20 subsets each


def test_faithfulness_correlation_matches_scipy_pearson_on_the_same_subsets(cnn_and_images):
    # re-create the sampler's subsets (same generator, same chunk) and compute Pearson with SciPy
    from deepscope.attribution.metrics.faithfulness import _random_subsets

    model, x = cnn_and_images
    a = torch.randn_like(x)
    result = faithfulness_correlation(model, x, 2, attributions=a, n_samples=8, subset_size=5, seed=3)
    subsets = _random_subsets(5 * 8, 64, 5, torch.Generator().manual_seed(3), "cpu").reshape(5, 8, 64)
    with torch.no_grad():
        full = model(x)[:, 2]
        for i in range(5):
            points = torch.where(subsets[i], torch.zeros(64, dtype=x.dtype), x[i].reshape(64)).reshape(8, 1, 8, 8)
            drops = (full[i] - model(points)[:, 2]).numpy()
            sums = (a[i].reshape(64) * subsets[i]).sum(dim=1).numpy()
            assert result.correlations[i].item() == pytest.approx(pearsonr(sums, drops)[0], abs=1e-10)


def test_bad_arguments_raise_deepscope_errors(cnn_and_images):
    model, x = cnn_and_images
    with pytest.raises(DeepscopeError, match="step_fraction"):
        deletion_curve(model, x, attributions=x, step_fraction=0.0)
    with pytest.raises(DeepscopeError, match="attributions"):
        deletion_curve(model, x, attributions=x[:2])
    with pytest.raises(DeepscopeError, match="output"):
        insertion_curve(model, x, attributions=x, output="softmax")
    with pytest.raises(DeepscopeError, match="subset_size"):
        faithfulness_correlation(model, x, attributions=x, subset_size=65)
    with pytest.raises(DeepscopeError):
        deletion_curve(model, x.clone().fill_(float("nan")), attributions=x)
    with pytest.raises(DeepscopeError, match="attributions"):
        deletion_curve(model, x, attributions="no_such_method")


def test_summary_metrics_agree_with_the_individual_metrics(cnn_and_images):
    from deepscope.attribution.metrics import localisation, summary_metrics

    model, x = cnn_and_images
    a = torch.rand_like(x)
    mask = (torch.rand_like(x) < 0.3).long()
    summary = summary_metrics(model, x, 1, a, mask, step_fraction=0.25)
    assert summary["deletion_auc"][0] == deletion_curve(model, x, 1, attributions=a, step_fraction=0.25).mean_auc
    assert summary["localisation_auroc"][0] == localisation(a, mask).means["auroc"][0]
    assert summary["examples"] == 5 and set(summary) >= {"insertion_auc", "sparseness", "precision_at_k"}
