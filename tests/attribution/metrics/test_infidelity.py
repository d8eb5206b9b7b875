import pytest
import torch
from captum.metrics import infidelity as captum_infidelity

from deepscope.attribution.metrics import infidelity
from deepscope.errors import DeepscopeError


@pytest.mark.parametrize("normalise", [False, True])
def test_infidelity_matches_captum_on_the_same_perturbations(cnn_and_images, normalise):
    model, x = cnn_and_images
    a = torch.randn_like(x)
    targets = torch.tensor([0, 1, 2, 0, 1])
    noise = 0.1 * torch.randn(7, *x.shape, dtype=x.dtype)  # (n_samples, batch, ...)

    def perturb(expanded):  # Captum repeats each example n_samples times (repeat_interleave)
        flat = noise.transpose(0, 1).reshape(-1, *x.shape[1:])
        return flat, expanded - flat

    ours = infidelity(model, x, targets, attributions=a, perturbations=noise, normalise=normalise)
    theirs = captum_infidelity(model, perturb, x, a, target=targets, n_perturb_samples=7, normalize=normalise)
    # same float64 arithmetic up to summation order: 1e-10 relative
    torch.testing.assert_close(ours.values, theirs.double(), rtol=1e-10, atol=1e-12)
    assert ours.n_samples == 7 and ours.per_example_standard_error.shape == (5,)


def test_infidelity_is_zero_for_gradient_of_linear_model(linear_model):
    x = torch.randn(3, 6, dtype=torch.float64)
    result = infidelity(linear_model, x, 2, attributions=linear_model.weight[2].detach().expand(3, 6), n_samples=5)
    assert result.mean < 1e-20


def test_infidelity_bad_arguments(cnn_and_images):
    model, x = cnn_and_images
    with pytest.raises(DeepscopeError, match="perturbations"):
        infidelity(model, x, attributions=x, perturbations=torch.zeros(2, 3))
    with pytest.raises(DeepscopeError, match="noise_std"):
        infidelity(model, x, attributions=x, noise_std=0.0)
