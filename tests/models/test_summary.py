import pytest
import torch
from torch import nn
from torch.nn import functional as F

from deepscope.errors import DataError, InvalidParameterError
from deepscope.models import ARCHITECTURES, ModelSummary, build, model_summary
from deepscope.models.summary import functional_activations
from deepscope.registry import ANALYSES
from deepscope.testing import check_model_untouched, make_fixture

SHAPES = {
    "mlp": (13,),
    "cnn2d": (1, 8, 8),
    "cnn1d": (4, 20),
    "resnet": (1, 8, 8),
    "transformer": (1, 8, 8),
    "basset": (4, 200),
}


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_counts_equal_the_sum_of_numel(name):
    model = build(name, SHAPES[name], 3)
    summary = model_summary(model, input_shape=SHAPES[name])
    total = sum(p.numel() for p in model.parameters())
    assert summary.total_parameters == summary.trainable_parameters == total
    assert sum(row["parameters"] for row in summary.layers) == total
    assert summary.output_shape == (3,)
    assert summary.functional_activations is not None  # the reference models are all fx-traceable


def test_output_shapes_match_a_real_forward_pass():
    # oracle: run the layers of a Sequential one by one and compare each output's shape
    model = build("cnn2d", (1, 8, 8), 10).eval()
    summary = model_summary(model, input_shape=(1, 8, 8))
    x = torch.zeros(2, 1, 8, 8)
    for layer, row in zip(model, summary.layers):
        x = layer(x)
        assert row["output_shape"] == tuple(x.shape[1:])
        assert row["calls"] == 1
    assert summary.layer_types == {"Conv2d": 2, "BatchNorm2d": 2, "ReLU": 3, "MaxPool2d": 2, "Flatten": 1, "Linear": 2}
    assert summary.activation_modules == {"ReLU": 3}
    assert summary.buffer_elements == sum(b.numel() for b in model.buffers())


def test_tied_and_frozen_parameters_are_counted_once():
    shared = nn.Linear(4, 4)
    model = nn.Sequential(shared, nn.Tanh(), shared)
    model[0].bias.requires_grad_(False)
    summary = model_summary(model, input_shape=(4,))
    assert summary.total_parameters == 20
    assert summary.trainable_parameters == 16
    assert [row["calls"] for row in summary.layers] == [2, 1]  # the shared layer is listed once, called twice


def test_functional_activations_are_found_by_fx():
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(3, 3)

        def forward(self, x):
            return F.softmax(torch.tanh(F.gelu(self.linear(x))).relu(), dim=-1)

    summary = model_summary(Functional(), input_shape=(3,))
    assert summary.functional_activations == ["gelu", "tanh", "relu", "softmax"]
    assert summary.activation_modules == {}
    assert "functional gelu" in summary.activations


def test_untraceable_model_reports_unknown():
    class DataDependent(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(3, 2)

        def forward(self, x):
            return self.linear(x) if x.sum() > 0 else torch.sigmoid(self.linear(x))

    summary = model_summary(DataDependent())
    assert summary.functional_activations is None
    assert summary.trace_error
    assert "unknown functional activations" in summary.activations
    assert summary.layers[0]["output_shape"] is None  # no input_shape given: nothing traced
    assert functional_activations(nn.Linear(2, 2)) == ([], "")


def test_model_is_untouched_and_train_mode_is_noted():
    fixture = make_fixture("cnn")
    summary = check_model_untouched(model_summary, fixture.model, fixture.model, input_shape=(1, 8, 8))
    assert "train mode" in summary.note
    assert summary.trainable_parameters < summary.total_parameters  # the fixture freezes its first parameter
    assert "model_summary" in ANALYSES


def test_result_views():
    summary = model_summary(build("mlp", (5,), 2, widths=(4,)), input_shape=(5,))
    assert isinstance(summary, ModelSummary)
    assert [row["name"] for row in summary.rows()] == ["0", "1", "2", "3"]
    assert summary.to_json()
    figure = summary.plot()
    assert len(figure.axes[0].patches) == 2  # one bar per layer with parameters
    assert "34 parameters" in summary.sentence()


def test_bad_input_shape():
    with pytest.raises(InvalidParameterError, match="input_shape"):
        model_summary(nn.Linear(3, 2), input_shape=(0,))
    with pytest.raises(InvalidParameterError, match="input_shape"):
        model_summary(nn.Linear(3, 2), input_shape="3")
    with pytest.raises(DataError, match="cannot take the inputs"):
        model_summary(nn.Linear(3, 2), input_shape=(4,))


def test_example_inputs_trace_integer_token_models():
    model = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(12, 2))
    summary = model_summary(model, example_inputs=torch.tensor([[1, 2, 3], [4, 5, 6]]))
    assert summary.input_shape == (3,)
    assert [row["output_shape"] for row in summary.layers] == [(3, 4), (12,), (2,)]
    with pytest.raises(InvalidParameterError, match="example_inputs"):
        model_summary(model, example_inputs=[[1, 2, 3]])


def test_chart_of_a_deep_model_shows_the_largest_layers():
    model = nn.Sequential(*(nn.Linear(3, 3) for _ in range(45)), nn.Linear(3, 50))
    figure = model_summary(model).plot()
    assert len(figure.axes[0].patches) == 40
    assert "40 largest" in figure.axes[0].get_title()


def test_nan_weights_are_flagged_naming_the_parameter_and_layer():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    healthy = model_summary(model, input_shape=(4,))
    assert healthy.nonfinite == [] and "WARNING" not in healthy.sentence()
    with torch.no_grad():
        model[2].weight[0, :2] = float("nan")
    summary = model_summary(model, input_shape=(4,))  # described, not refused
    assert summary.nonfinite == [{"name": "2.weight", "layer": "2", "type": "Linear", "bad": 2, "total": 6}]
    assert "WARNING: its weights are not finite: '2.weight' (layer '2', Linear) has 2 of 6" in summary.sentence()
    assert summary.to_dict()["nonfinite"][0]["name"] == "2.weight"


def test_a_scripted_model_is_summarised_without_hooks():
    # TorchScript modules refuse Python forward hooks: the card used to fail on every scripted model
    model = build("cnn2d", (1, 8, 8), 10).eval()
    scripted = torch.jit.script(model)
    summary = check_model_untouched(model_summary, scripted, scripted, input_shape=(1, 8, 8))
    eager = model_summary(model, input_shape=(1, 8, 8))
    assert summary.total_parameters == eager.total_parameters and summary.output_shape == (10,)
    assert summary.layer_types == eager.layer_types  # the scripted layers keep their class names
    assert all(row["output_shape"] is None for row in summary.layers)  # no hooks, so no per-layer shapes
