"""Every metric result serialises to strict JSON, has table rows, and draws a figure without a window."""

import json

import pytest
import torch
from matplotlib.figure import Figure

from deepscope.attribution.metrics import (
    complexity,
    deletion_curve,
    faithfulness_correlation,
    infidelity,
    insertion_curve,
    localisation,
    max_sensitivity,
    model_parameter_randomisation,
    road,
)


@pytest.fixture
def case(cnn_and_images):
    model, x = cnn_and_images
    return model, x, torch.rand_like(x)


@pytest.mark.parametrize(
    "build, drawable",
    [
        (lambda m, x, a: deletion_curve(m, x, 0, attributions=a, step_fraction=0.25), True),
        (lambda m, x, a: insertion_curve(m, x, 0, attributions=a, step_fraction=0.25), True),
        (lambda m, x, a: road(m, x, 0, attributions=a, fractions=(0.2, 0.6)), True),
        (lambda m, x, a: model_parameter_randomisation(m, x, 0, ssim=True), True),
        (lambda m, x, a: faithfulness_correlation(m, x, 0, attributions=a, n_samples=5), False),
        (lambda m, x, a: infidelity(m, x, 0, attributions=a, n_samples=3), False),
        (lambda m, x, a: max_sensitivity(m, x, 0, n_samples=2), False),
        (lambda m, x, a: localisation(a, (a > 0.5).long()), False),
        (lambda m, x, a: complexity(a), False),
    ],
)
def test_result_serialises_and_draws(case, build, drawable):
    result = build(*case)
    payload = json.loads(result.to_json())
    assert payload["type"] == type(result).__name__
    assert result.rows() and "<table>" in result._repr_html_()
    if drawable:
        assert isinstance(result.plot(), Figure)
