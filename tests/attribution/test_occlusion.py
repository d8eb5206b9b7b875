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


def test_token_ids_are_occluded_with_a_token_and_match_captum():
    import hf_models

    model = hf_models.tiny_bert(dtype=torch.float64)
    inputs, _ = hf_models.token_batch(3, seq_len=6, seed=4)
    inputs["input_ids"][:, 0] = 2
    mask_id = 5
    ours = occlusion(model, inputs, target=1, baseline=mask_id, keep_tokens=(2,), output_fn=lambda out: out.logits)
    forward = lambda ids, mask: model(input_ids=ids, attention_mask=mask).logits  # noqa: E731
    reference = Occlusion(forward).attribute(
        inputs["input_ids"],
        sliding_window_shapes=(1,),
        baselines=mask_id,
        target=1,
        additional_forward_args=(inputs["attention_mask"],),
    )
    reference = reference.double()  # Captum returns float32 attributions for integer inputs
    reference[:, 0] = 0.0  # [CLS] is kept by our baseline: occluding it changes nothing
    assert ours.values.shape == (3, 6)
    # the same float64 score differences; Captum stores them in float32 (relative rounding 6e-8)
    assert torch.allclose(ours.values, reference, atol=1e-6 * float(reference.abs().max()), rtol=0)
    assert float(ours.values[:, 0].abs().max()) < 1e-12  # same ids, another batch layout: rounding only


def test_token_ids_with_a_float_baseline_are_refused():
    model = torch.nn.Sequential(torch.nn.Embedding(5, 2), torch.nn.Flatten(), torch.nn.Linear(6, 2))
    with pytest.raises(InvalidParameterError, match="token id"):
        occlusion(model, torch.randint(0, 5, (2, 3)), baseline=0.5)


def test_a_baseline_id_outside_the_vocabulary_is_refused():
    from deepscope.errors import DataError

    model = torch.nn.Sequential(torch.nn.Embedding(5, 2), torch.nn.Flatten(), torch.nn.Linear(6, 2))
    with pytest.raises(DataError, match="baseline ids in"):
        occlusion(model, torch.randint(0, 5, (2, 3)), baseline=5)
