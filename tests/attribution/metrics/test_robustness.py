import pytest
import torch
from captum.attr import Saliency
from captum.metrics import sensitivity_max

from deepscope.attribution.metrics import max_sensitivity
from deepscope.errors import DeepscopeError

# Captum's Saliency warns that it set requires_grad on our inputs; harmless here
pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")


def test_max_sensitivity_matches_captum_on_the_same_perturbations(cnn_and_images):
    model, x = cnn_and_images
    targets = torch.tensor([0, 1, 2, 1, 0])
    offsets = (torch.rand(6, *x.shape, dtype=x.dtype) * 2 - 1) * 0.05  # (n_samples, batch, ...)

    def perturb(expanded, radius):  # Captum repeats each example n_samples times (repeat_interleave)
        return expanded + offsets.transpose(0, 1).reshape(-1, *x.shape[1:])

    def explain(inputs, target):
        return Saliency(model).attribute(inputs, target=target)

    theirs = sensitivity_max(explain, x, perturb_func=perturb, n_perturb_samples=6, target=targets)
    ours = max_sensitivity(model, x, targets, method="saliency", perturbations=offsets)
    # both compute |grad| in float64 with the same model: agreement to rounding, 1e-10 relative
    torch.testing.assert_close(ours.values, theirs.double(), rtol=1e-10, atol=1e-12)
    assert ours.attribution_calls == 5 * 7


def test_unnormalised_sensitivity_of_a_quadratic_by_hand():
    # f(x) = Σ x_i² / 2 as class 0 (class 1 = 0): saliency |x|, so ‖Φ(x+δ) − Φ(x)‖ = ‖δ‖ for x >> δ
    class Quadratic(torch.nn.Module):
        def __init__(self):
            super().__init__()
            # inputs follow the model's dtype; a parameter-less model would run in float32
            self.register_buffer("dtype_anchor", torch.zeros(1, dtype=torch.float64))

        def forward(self, x):
            return torch.stack([(x**2).sum(dim=1) / 2, torch.zeros(len(x), dtype=x.dtype)], dim=1)

    x = torch.full((2, 3), 5.0, dtype=torch.float64)
    offsets = torch.zeros(2, 2, 3, dtype=torch.float64)
    offsets[0, :, 0] = 0.1
    offsets[1, :, :] = 0.1  # the larger move, norm 0.1 * sqrt(3)
    result = max_sensitivity(Quadratic(), x, 0, perturbations=offsets, normalise=False)
    torch.testing.assert_close(result.values, torch.full((2,), 0.1 * 3**0.5, dtype=torch.float64))


def test_sampled_sensitivity_is_bounded_and_seeded(cnn_and_images):
    model, x = cnn_and_images
    one = max_sensitivity(model, x, 0, n_samples=4, radius=0.01, seed=1)
    two = max_sensitivity(model, x, 0, n_samples=4, radius=0.01, seed=1, max_batch=5)
    torch.testing.assert_close(one.values, two.values)
    assert (one.values >= 0).all() and one.n_samples == 4


def test_bad_arguments(cnn_and_images):
    model, x = cnn_and_images
    with pytest.raises(DeepscopeError, match="radius"):
        max_sensitivity(model, x, radius=0.0)
    with pytest.raises(DeepscopeError, match="method"):
        max_sensitivity(model, x, method=3)
    with pytest.raises(DeepscopeError, match="perturbations"):
        max_sensitivity(model, x, perturbations=torch.zeros(2, 3))
