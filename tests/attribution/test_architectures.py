"""Every method on every built-in architecture: it answers or refuses with a DeepscopeError."""

import pytest
import torch

from deepscope import datasets, models
from deepscope.attribution import METHODS, deeplift
from deepscope.errors import DeepscopeError

CASES = {"mlp": "wine", "cnn2d": "digits", "cnn1d": "mnist1d", "resnet": "digits", "transformer": "planted_motifs"}
CHEAP = {
    "integrated_gradients": {"steps": 8},
    **{n: {"samples": 3} for n in ("smoothgrad", "vargrad", "expected_gradients", "gradient_shap", "shapley")},
}


@pytest.mark.parametrize("architecture", sorted(CASES))
def test_every_method_answers_or_refuses(architecture):
    data = datasets.load(CASES[architecture])
    model = models.build(architecture, data.input_shape, data.num_classes)
    inputs = data.x_test[:3]
    for name, function in METHODS.items():
        try:
            result = function(model, inputs, **CHEAP.get(name, {}))
        except DeepscopeError:
            continue
        assert result.values.shape == inputs.shape, name
        assert bool(torch.isfinite(result.values).all()), name


def test_deeplift_is_complete_on_a_residual_network():
    data = datasets.load("digits")
    model = models.build("resnet", data.input_shape, data.num_classes)
    # float32 sums over 64 pixels and a few residual branches: ~1e-6 relative
    assert deeplift(model, data.x_test[:8]).diagnostics["completeness_error"].max() < 1e-4
