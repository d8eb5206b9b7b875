import pytest
import torch
from captum.attr import LayerAttribution, LayerGradCam

from deepscope.attribution import grad_cam
from deepscope.errors import InvalidParameterError, UnsupportedModelError


@pytest.mark.parametrize("layer_index", [0, 3])
def test_matches_captum_layer_grad_cam(cnn_and_images, layer_index):
    model, images = cnn_and_images
    layer = model[layer_index]
    ours = grad_cam(model, images, target=2, layer=layer, interpolate="nearest")
    reference = LayerGradCam(model, layer).attribute(images, target=2, relu_attributions=True)
    # same gradients and activations in float64
    torch.testing.assert_close(ours.diagnostics["layer_map"], reference, rtol=1e-10, atol=1e-12)
    upsampled = LayerAttribution.interpolate(reference, (8, 8), interpolate_mode="nearest")
    torch.testing.assert_close(ours.values, upsampled.expand_as(images))


def test_default_layer_is_the_last_convolution_and_no_hook_remains(cnn_and_images):
    model, images = cnn_and_images
    by_default = grad_cam(model, images, target=[[0], [1]])
    assert by_default.options["layer"] == "3" and by_default.values.shape == (2, *images.shape)
    assert all(not module._forward_hooks for module in model.modules())


def test_hooks_are_removed_when_the_forward_fails(cnn_and_images):
    model, images = cnn_and_images
    with pytest.raises(UnsupportedModelError):
        grad_cam(model, images, layer="6")  # the Linear layer's output has no spatial map
    assert all(not module._forward_hooks for module in model.modules())


def test_bad_layer(cnn_and_images):
    model, images = cnn_and_images
    with pytest.raises(InvalidParameterError, match="layer"):
        grad_cam(model, images, layer="nope")
    with pytest.raises(UnsupportedModelError):
        grad_cam(torch.nn.Linear(3, 2), torch.rand(2, 3))


def test_one_dimensional_convolutions_match_captum():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv1d(4, 5, 5, padding=2),
        torch.nn.ReLU(),
        torch.nn.MaxPool1d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(50, 2),
    ).double()
    sequences = torch.nn.functional.one_hot(torch.randint(0, 4, (3, 20)), 4).permute(0, 2, 1).double()
    ours = grad_cam(model, sequences, target=1, layer=model[0])
    reference = LayerGradCam(model, model[0]).attribute(sequences, target=1, relu_attributions=True)
    torch.testing.assert_close(ours.diagnostics["layer_map"], reference, rtol=1e-10, atol=1e-12)
    assert ours.values.shape == sequences.shape
