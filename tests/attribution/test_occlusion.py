import pytest
import torch
from captum.attr import Occlusion

from deepscope.attribution import occlusion
from deepscope.errors import InvalidParameterError


@pytest.mark.parametrize(("window", "strides"), [((1, 3, 3), (1, 2, 2)), ((1, 2, 2), None), ((1, 8, 8), None)])
def test_matches_captum(cnn_and_images, window, strides):
    model, images = cnn_and_images
    ours = occlusion(model, images, target=1, window=window, strides=strides, baseline=0.2, max_batch=5)
    reference = Occlusion(model).attribute(
        images, sliding_window_shapes=window, strides=strides or window, baselines=0.2, target=1
    )
    # same perturbed inputs; Captum casts its sums to float32 before dividing (relative error ~6e-8)
    torch.testing.assert_close(ours.values, reference.double(), rtol=1e-6, atol=1e-9)


def test_single_features_of_a_linear_model_give_weight_times_difference():
    model = torch.nn.Linear(5, 2).double()
    rows = torch.randn(3, 5, dtype=torch.float64)
    result = occlusion(model, rows, target=[[0], [1]])
    torch.testing.assert_close(result.values, model.weight.detach()[:, None, :] * rows)


def test_window_too_large(mlp_and_rows):
    model, rows = mlp_and_rows
    with pytest.raises(InvalidParameterError, match="window"):
        occlusion(model, rows, window=9)
