import pytest
import torch

from deepscope.attribution import integrated_gradients, saliency, smoothgrad, vargrad
from deepscope.errors import InvalidParameterError


def test_smoothgrad_is_the_mean_over_the_same_noisy_inputs(mlp_and_rows):
    model, rows = mlp_and_rows
    samples, noise = 5, 0.2
    result = smoothgrad(model, rows, target=1, samples=samples, noise=noise, seed=3, method_options={"absolute": False})
    # rebuild the same noise by hand (same generator, same draw) and average plain gradients
    sigma = noise * (rows.max(1).values - rows.min(1).values)
    epsilon = torch.randn((samples, *rows.shape), generator=torch.Generator().manual_seed(3), dtype=rows.dtype)
    noisy = rows + sigma[None, :, None] * epsilon
    expected = torch.stack([saliency(model, noisy[s], target=1, absolute=False).values for s in range(samples)])
    torch.testing.assert_close(result.values, expected.mean(0))
    torch.testing.assert_close(
        vargrad(model, rows, 1, samples=samples, noise=noise, seed=3, method_options={"absolute": False}).values,
        expected.var(0, unbiased=False),
    )


def test_zero_noise_reproduces_the_inner_method(cnn_and_images):
    model, images = cnn_and_images
    smooth = smoothgrad(model, images, target=0, method="integrated_gradients", samples=2, noise=0.0,
                        method_options={"steps": 8})  # fmt: skip
    torch.testing.assert_close(smooth.values, integrated_gradients(model, images, target=0, steps=8).values)
    assert smooth.diagnostics["standard_error"].max() < 1e-12
    assert vargrad(model, images, target=0, samples=2, noise=0.0).values.abs().max() < 1e-12


def test_several_targets_and_bad_method(mlp_and_rows):
    model, rows = mlp_and_rows
    assert smoothgrad(model, rows, target=[[0], [2]], samples=3).values.shape == (2, *rows.shape)
    with pytest.raises(InvalidParameterError, match="method"):
        smoothgrad(model, rows, method="nonsense")
