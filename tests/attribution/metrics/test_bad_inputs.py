"""Bad input across the metrics: tuple outputs, train-mode modules, several targets, wrong targets."""

import pytest
import torch

from deepscope.attribution.metrics import (
    deletion_curve,
    faithfulness_correlation,
    infidelity,
    max_sensitivity,
    model_parameter_randomisation,
    road,
)
from deepscope.errors import DeepscopeError, UnsupportedModelError
from deepscope.testing import make_fixture


class TupleOutput(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))

    def forward(self, x):
        return self.body(x), "auxiliary"


def test_tuple_outputs_need_output_fn_and_work_with_it():
    model, x = TupleOutput(), torch.rand(4, 1, 8, 8)
    with pytest.raises(UnsupportedModelError, match="output_fn"):
        deletion_curve(model, x, 0, attributions=x)
    pick = lambda out: out[0]  # noqa: E731
    plain = torch.nn.Sequential(model.body)
    ours = deletion_curve(model, x, 0, attributions=x, output_fn=pick, step_fraction=0.25)
    reference = deletion_curve(plain, x, 0, attributions=x, step_fraction=0.25)
    torch.testing.assert_close(ours.curves, reference.curves)
    assert road(model, x, 0, attributions=x, output_fn=pick, fractions=(0.5,)).morf.shape == (4, 1)


def test_train_mode_dropout_is_run_in_eval_and_reported():
    fixture = make_fixture("cnn")
    result = faithfulness_correlation(fixture.model, fixture.inputs[:4], 0, n_samples=4)
    assert "train mode" in result.note
    assert fixture.model.training  # flags restored


@pytest.mark.parametrize(
    "call",
    [
        lambda m, x: deletion_curve(m, x, [0, 1], attributions=x),  # several targets
        lambda m, x: infidelity(m, x, 7, attributions=x),  # class out of range
        lambda m, x: max_sensitivity(m, x, torch.tensor([0.5] * 4)),  # float targets
        lambda m, x: model_parameter_randomisation(m, x.long()),  # integer inputs
        lambda m, x: deletion_curve(m, x, 0, attributions=x, baseline=torch.zeros(3)),  # baseline shape
    ],
)
def test_clear_errors(call):
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
    with pytest.raises(DeepscopeError):
        call(model, torch.rand(4, 1, 8, 8))


def test_output_fn_reaches_the_attribution_methods():
    # attributions=None / method names compute saliency through METHODS, which needs output_fn too
    model, x = TupleOutput(), torch.rand(4, 1, 8, 8)
    pick = lambda out: out[0]  # noqa: E731
    plain = torch.nn.Sequential(model.body)
    torch.testing.assert_close(
        deletion_curve(model, x, 0, output_fn=pick, step_fraction=0.5).curves,
        deletion_curve(plain, x, 0, step_fraction=0.5).curves,
    )
    assert max_sensitivity(model, x, 0, n_samples=2, output_fn=pick).values.shape == (4,)
    assert model_parameter_randomisation(model, x, 0, output_fn=pick).layers == ["body.1"]
