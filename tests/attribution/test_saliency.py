import pytest
import torch
from captum.attr import Saliency

from deepscope.attribution import saliency
from deepscope.errors import DataError, InvalidParameterError, UnsupportedModelError


def test_matches_captum(cnn_and_images):
    model, images = cnn_and_images
    ours = saliency(model, images, target=torch.tensor([0, 1, 2, 0]))
    reference = Saliency(model).attribute(images, target=torch.tensor([0, 1, 2, 0]))
    # same autograd graph in float64: only summation order can differ (~1e-16 relative)
    torch.testing.assert_close(ours.values, reference, rtol=1e-10, atol=1e-12)


def test_linear_model_gradient_is_the_weight():
    model = torch.nn.Linear(4, 2).double()
    result = saliency(model, torch.randn(3, 4, dtype=torch.float64), target=1, absolute=False)
    torch.testing.assert_close(result.values, model.weight[1].detach().expand(3, 4))


def test_several_targets_stack_on_a_leading_dimension(mlp_and_rows):
    model, rows = mlp_and_rows
    several = saliency(model, rows, target=[[0], [2]])
    assert several.values.shape == (2, *rows.shape) and several.target.shape == (2, len(rows))
    torch.testing.assert_close(several.values[1], saliency(model, rows, target=2).values)


def test_default_target_is_the_prediction(mlp_and_rows):
    model, rows = mlp_and_rows
    assert torch.equal(saliency(model, rows).target, model(rows).argmax(1))


def test_bad_inputs_are_refused(mlp_and_rows):
    model, rows = mlp_and_rows
    with pytest.raises(DataError):
        saliency(model, torch.full_like(rows, float("nan")))
    with pytest.raises(InvalidParameterError, match="class indices"):
        saliency(model, rows, target=7)
    with pytest.raises(InvalidParameterError, match="floating-point"):
        saliency(model, torch.ones(2, 5, dtype=torch.long))
    with pytest.raises(InvalidParameterError, match="max_batch"):
        saliency(model, rows, max_batch=0)


def test_tuple_output_needs_output_fn(mlp_and_rows):
    model, rows = mlp_and_rows

    class TwoHeads(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = model

        def forward(self, x):
            return {"logits": self.body(x), "aux": x}

    with pytest.raises(UnsupportedModelError, match="output_fn"):
        saliency(TwoHeads(), rows)
    torch.testing.assert_close(
        saliency(TwoHeads(), rows, target=1, output_fn=lambda out: out["logits"]).values,
        saliency(model, rows, target=1).values,
    )


def test_chunking_does_not_change_the_result(cnn_and_images):
    model, images = cnn_and_images
    torch.testing.assert_close(saliency(model, images, max_batch=1).values, saliency(model, images).values)


def test_train_mode_dropout_runs_in_eval_semantics_and_says_so():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.Dropout(0.5), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    model.train()
    rows = torch.randn(4, 5)
    first, second = saliency(model, rows, target=0), saliency(model, rows, target=0)
    assert torch.equal(first.values, second.values)  # no dropout noise inside the call
    assert "train mode" in first.note and model.training  # reported, and the caller's flag is restored
