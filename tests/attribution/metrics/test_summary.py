"""summary_metrics: the report's cheap metric set equals the individual metrics it summarises."""

from __future__ import annotations

import pytest
import torch

from deepscope.attribution import saliency
from deepscope.attribution.metrics import complexity, deletion_curve, insertion_curve, localisation
from deepscope.attribution.metrics.summary import summary_metrics


def _setup():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    inputs = torch.randn(5, 6, generator=torch.Generator().manual_seed(1))
    mask = torch.zeros_like(inputs)
    mask[:, :2] = 1.0
    return model, inputs, mask


def test_each_entry_is_the_metric_it_names():
    model, inputs, mask = _setup()
    values = saliency(model, inputs, 1).values
    summary = summary_metrics(model, inputs, 1, values, mask, step_fraction=0.25)
    deletion = deletion_curve(model, inputs, 1, attributions=values, step_fraction=0.25)
    insertion = insertion_curve(model, inputs, 1, attributions=values, step_fraction=0.25)
    assert summary["deletion_auc"] == pytest.approx((deletion.mean_auc, deletion.standard_error))
    assert summary["insertion_auc"] == pytest.approx((insertion.mean_auc, insertion.standard_error))
    assert summary["sparseness"] == pytest.approx(complexity(values).means["sparseness"][:2])
    local = localisation(values, mask)
    assert summary["localisation_auroc"] == pytest.approx(local.means["auroc"][:2])
    assert summary["precision_at_k"] == pytest.approx(local.means["precision_at_k"][:2])
    assert summary["examples"] == 5


def test_without_attributions_it_uses_saliency_and_without_a_mask_no_localisation():
    model, inputs, _ = _setup()
    default = summary_metrics(model, inputs, 1)
    explicit = summary_metrics(model, inputs, 1, saliency(model, inputs, 1).values)
    assert "localisation_auroc" not in default
    assert default["deletion_auc"] == pytest.approx(explicit["deletion_auc"])
    assert summary_metrics(model, inputs, 1, "input_x_gradient")["examples"] == 5
