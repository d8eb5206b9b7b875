"""Attribution over several input tensors (deepscope/attribution/_multi_input.py).

Oracle: Captum's convention and numbers: a tuple of inputs gives a tuple of attributions, checked
against Captum's Saliency / InputXGradient / IntegratedGradients / DeepLift on the same float64
two-input model (a conv branch and a dense branch concatenated), the same targets and baselines.
"""

import json
import pathlib
import re
import warnings

import pytest
import torch
from captum.attr import DeepLift, DeepLiftShap, InputXGradient, IntegratedGradients, Saliency
from torch import nn

from deepscope.attribution import (
    deep_lift_shap,
    deeplift,
    expected_gradients,
    input_x_gradient,
    integrated_gradients,
    ism,
    lrp,
    occlusion,
    saliency,
    smoothgrad,
)
from deepscope.attribution._base import Attribution
from deepscope.attribution._multi_input import MultiInputAttribution, PackedModel, Packing
from deepscope.errors import DataError, InvalidParameterError, UnsupportedModelError
from deepscope.testing import check_model_untouched


class TwoBranches(nn.Module):
    """``forward(sequence (B, 4, 10), features (B, 5))``: conv branch + dense branch, concatenated."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv1d(4, 3, 3), nn.ReLU(inplace=inplace), nn.Flatten())
        self.dense = nn.Sequential(nn.Linear(5, 6), nn.ReLU())
        self.head = nn.Sequential(nn.Linear(3 * 8 + 6, 8), nn.ReLU(), nn.Linear(8, 3))

    def forward(self, sequence: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.conv(sequence), self.dense(features)], dim=1))


@pytest.fixture
def two_inputs():
    torch.manual_seed(1)  # a seed whose head has 2-5 active hidden units per example (not a dead network)
    model = TwoBranches().double()
    generator = torch.Generator().manual_seed(1)
    sequence = torch.randn(4, 4, 10, generator=generator, dtype=torch.float64)
    features = torch.randn(4, 5, generator=generator, dtype=torch.float64)
    return model, (sequence, features)


def _captum(explainer, model, inputs, **kwargs):
    with warnings.catch_warnings():  # Captum warns that it sets requires_grad on the inputs
        warnings.simplefilter("ignore")
        return explainer(model).attribute(inputs, **kwargs)


TARGETS = torch.tensor([0, 1, 2, 1])


# ---------------------------------------------------------------------------------------------- oracles


@pytest.mark.parametrize("absolute", [True, False])
def test_saliency_matches_captum(two_inputs, absolute):
    model, inputs = two_inputs
    ours = saliency(model, inputs, target=TARGETS, absolute=absolute)
    reference = _captum(Saliency, model, inputs, target=TARGETS, abs=absolute)
    assert isinstance(ours, MultiInputAttribution) and len(ours.values) == 2
    assert all(bool((part != 0).sum() > part.numel() // 2) for part in reference)  # not zeros against zeros
    for mine, theirs in zip(ours.values, reference, strict=True):
        # the same autograd graph in float64: only summation order can differ (~1e-16 relative)
        torch.testing.assert_close(mine, theirs, rtol=1e-10, atol=1e-12)


def test_input_x_gradient_matches_captum(two_inputs):
    model, inputs = two_inputs
    ours = input_x_gradient(model, inputs, target=TARGETS)
    reference = _captum(InputXGradient, model, inputs, target=TARGETS)
    for mine, theirs in zip(ours.values, reference, strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-10, atol=1e-12)  # as above


def test_integrated_gradients_matches_captum_with_a_baseline_per_input(two_inputs):
    model, inputs = two_inputs
    sequence_baseline = 0.1 * torch.randn(4, 4, 10, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    baselines = (sequence_baseline, 0.5)
    ours = integrated_gradients(model, inputs, target=TARGETS, baseline=baselines, steps=50)
    reference = _captum(
        IntegratedGradients, model, inputs, target=TARGETS, baselines=baselines, method="gausslegendre", n_steps=50
    )
    for mine, theirs in zip(ours.values, reference, strict=True):
        # the same 50 Gauss-Legendre nodes; the nodes and weights are computed differently (numpy's
        # leggauss there), which moves them by ~1e-13 and the attributions by ~1e-10 (measured 1.7e-10)
        torch.testing.assert_close(mine, theirs, rtol=1e-7, atol=1e-8)


def test_deeplift_matches_captum_with_a_baseline_per_input(two_inputs):
    model, inputs = two_inputs
    baselines = (torch.zeros(4, 10, dtype=torch.float64), 0.5)  # one shared reference row for the sequence
    ours = deeplift(model, inputs, target=TARGETS, baseline=baselines)
    reference = _captum(DeepLift, model, inputs, target=TARGETS, baselines=(torch.zeros(1, 4, 10).double(), 0.5))
    for mine, theirs in zip(ours.values, reference, strict=True):
        # the same rescale multipliers (nn.ReLU modules, no reuse) in float64: summation order only
        torch.testing.assert_close(mine, theirs, rtol=1e-9, atol=1e-12)


def test_deep_lift_shap_matches_captum_with_paired_references(two_inputs):
    model, inputs = two_inputs
    generator = torch.Generator().manual_seed(5)
    references = tuple(0.3 * torch.randn(6, *x.shape[1:], generator=generator, dtype=torch.float64) for x in inputs)
    # eps 1e-10: Captum's threshold (deep_lift_shap defaults to tangermeme's 1e-6)
    ours = deep_lift_shap(model, inputs, target=TARGETS, references=references, eps=1e-10)
    reference = _captum(DeepLiftShap, model, inputs, target=TARGETS, baselines=references)
    for mine, theirs in zip(ours.values, reference, strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-9, atol=1e-13)  # float64, summation order only
    assert ours.diagnostics["references"] == 6 and float(ours.diagnostics["completeness_error"].max()) < 1e-9


def test_deep_lift_shap_shuffles_a_one_hot_input_and_pairs_zeros_with_the_other(two_inputs):
    model, (_, features) = two_inputs
    letters = torch.randint(0, 4, (4, 10), generator=torch.Generator().manual_seed(6))
    sequence = nn.functional.one_hot(letters, 4).permute(0, 2, 1).double()
    result = deep_lift_shap(model, (sequence, features), target=1, n_shuffles=5, seed=3)
    assert result.diagnostics["references"] == 5
    assert bool((result.values[0][sequence == 0] == 0).all())  # only the observed letters carry values
    # summation-to-delta against the mean reference, over both inputs together
    assert float(result.diagnostics["completeness_error"].max()) < 1e-9
    total = sum(v.flatten(1).sum(1) for v in result.values)
    torch.testing.assert_close(total, result.diagnostics["delta"], rtol=1e-9, atol=1e-13)


def test_deep_lift_shap_on_a_one_tuple_equals_the_tensor_result():
    torch.manual_seed(7)
    model = nn.Sequential(nn.Conv1d(4, 3, 5), nn.ReLU(), nn.Flatten(), nn.Linear(18, 2)).double()
    sequence = nn.functional.one_hot(torch.randint(0, 4, (3, 10)), 4).permute(0, 2, 1).double()
    on_tensor = deep_lift_shap(model, sequence, target=0, n_shuffles=4)
    on_tuple = deep_lift_shap(model, (sequence,), target=0, n_shuffles=4)
    torch.testing.assert_close(on_tuple.values[0], on_tensor.values, rtol=0, atol=0)


def test_deep_lift_shap_refuses_unpaired_references(two_inputs):
    model, inputs = two_inputs
    with pytest.raises(InvalidParameterError, match="the same number of references K"):
        deep_lift_shap(model, inputs, target=0, references=(torch.zeros(3, 4, 10), torch.zeros(2, 5)))
    with pytest.raises(InvalidParameterError, match="a tuple of 2 tensors"):
        deep_lift_shap(model, inputs, target=0, references=torch.zeros(3, 4, 10))
    with pytest.raises(InvalidParameterError, match="hypothetical"):
        deep_lift_shap(model, inputs, target=0, hypothetical=True)


def test_integrated_gradients_path_is_joint(two_inputs):
    """IG on (a, b) equals IG on the concatenated input of the same function: one straight path."""
    model, (sequence, features) = two_inputs
    packing = Packing(((4, 10), (5,)))
    packed = packing.pack((sequence, features))
    on_tuple = integrated_gradients(model, (sequence, features), target=TARGETS, baseline=(0.3, -0.2), steps=16)
    on_packed = integrated_gradients(
        PackedModel(model, packing),
        packed,
        target=TARGETS,
        baseline=packing.pack((0.3 + 0 * sequence, features * 0 - 0.2)),
        steps=16,
    )
    for mine, theirs in zip(on_tuple.values, packing.unpack(on_packed.values), strict=True):
        torch.testing.assert_close(mine, theirs, rtol=0, atol=0)  # the same computation


# ---------------------------------------------------------------------------------------------- completeness


def _delta(model, inputs, baselines, targets):
    with torch.no_grad():
        at_input = model(*inputs).gather(1, targets.unsqueeze(1)).squeeze(1)
        at_baseline = model(*baselines).gather(1, targets.unsqueeze(1)).squeeze(1)
    return at_input - at_baseline


def test_deeplift_sums_to_delta_over_all_inputs(two_inputs):
    model, inputs = two_inputs
    result = deeplift(model, inputs, target=TARGETS, baseline=(0.0, 1.0))
    total = sum(v.flatten(1).sum(1) for v in result.values)
    expected = _delta(model, inputs, (torch.zeros_like(inputs[0]), torch.ones_like(inputs[1])), TARGETS)
    # summation-to-delta is exact for the rescale rule; float64 rounding only
    torch.testing.assert_close(total, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(result.diagnostics["delta"], expected, rtol=1e-12, atol=1e-14)
    assert float(result.diagnostics["completeness_error"].max()) < 1e-9
    # neither input alone sums to the delta: completeness is a property of the joint sum
    assert not torch.allclose(result.values[0].flatten(1).sum(1), expected, atol=1e-6)


def test_adaptive_integrated_gradients_converges_on_the_joint_sum(two_inputs):
    model, inputs = two_inputs
    result = integrated_gradients(model, inputs, target=TARGETS, steps=None, tol=1e-3, max_steps=4096)
    total = sum(v.flatten(1).sum(1) for v in result.values)
    expected = _delta(model, inputs, tuple(torch.zeros_like(x) for x in inputs), TARGETS)
    error = (total - expected).abs() / expected.abs()
    torch.testing.assert_close(result.diagnostics["completeness_error"], error, rtol=1e-9, atol=1e-15)
    converged = result.diagnostics["converged"]
    assert bool((error[converged] < 1e-3).all()) and int(converged.sum()) >= 3


def test_input_x_gradient_reports_the_joint_completeness_error():
    """A linear model of two inputs: input × gradient is exact, over the sum of both inputs."""
    torch.manual_seed(3)
    a_weights, b_weights = torch.randn(3, dtype=torch.float64), torch.randn(2, dtype=torch.float64)

    class Linear2(nn.Module):
        def __init__(self):
            super().__init__()
            self.a_weights, self.b_weights = nn.Parameter(a_weights), nn.Parameter(b_weights)

        def forward(self, a, b):
            return (a @ self.a_weights + b @ self.b_weights + 0.7).unsqueeze(1)

    a, b = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
    result = input_x_gradient(Linear2(), (a, b), target=0, baseline=(1.0, -1.0))
    torch.testing.assert_close(result.values[0], (a - 1.0) * a_weights)  # w ⊙ (x − x'), analytic
    torch.testing.assert_close(result.values[1], (b + 1.0) * b_weights)
    assert float(result.diagnostics["completeness_error"].max()) < 1e-12


# ---------------------------------------------------------------------------------------------- shapes and result


def test_a_one_tuple_gives_the_tensor_result_in_a_tuple(two_inputs):
    model, (sequence, _) = two_inputs
    single = nn.Sequential(model.conv, nn.Linear(24, 3)).double()
    for method in (saliency, input_x_gradient, deeplift):
        on_tensor, on_tuple = method(single, sequence, target=1), method(single, (sequence,), target=1)
        assert isinstance(on_tensor, Attribution) and isinstance(on_tuple, MultiInputAttribution)
        torch.testing.assert_close(on_tuple.values[0], on_tensor.values, rtol=0, atol=0)
    on_tensor = integrated_gradients(single, sequence, target=1, steps=8)
    on_tuple = integrated_gradients(single, (sequence,), target=1, steps=8)
    torch.testing.assert_close(on_tuple.values[0], on_tensor.values, rtol=0, atol=0)


def test_several_targets_get_a_leading_dimension_in_every_input(two_inputs):
    model, inputs = two_inputs
    result = deeplift(model, inputs, target=[[0], [2]])
    assert [tuple(v.shape) for v in result.values] == [(2, 4, 4, 10), (2, 4, 5)]
    assert result.target.shape == (2, 4) and result.diagnostics["completeness_error"].shape == (2, 4)
    alone = deeplift(model, inputs, target=2)
    torch.testing.assert_close(result.values[1][1], alone.values[1], rtol=0, atol=0)
    assert result.part(1).values.shape == (2, 4, 5) and len(result.rows()) == 8


def test_packing_round_trips_with_leading_dimensions():
    packing = Packing(((2, 3), (4,)))
    assert packing.sizes == (6, 4)
    a, b = torch.randn(7, 5, 2, 3), torch.randn(7, 5, 4)  # (targets, rows, *features)
    packed = packing.pack((a, b))
    assert packed.shape == (7, 5, 10) and torch.equal(packed[1, 2, :6], a[1, 2].flatten())
    unpacked_a, unpacked_b = packing.unpack(packed)
    assert torch.equal(unpacked_a, a) and torch.equal(unpacked_b, b)


def test_result_part_rows_summary_json_and_plot(two_inputs):
    model, inputs = two_inputs
    result = integrated_gradients(model, inputs, target=TARGETS, steps=8)
    part = result.part(1)
    assert isinstance(part, Attribution) and torch.equal(part.values, result.values[1])
    assert torch.equal(part.target, result.target) and "over all 2 inputs together" in part.note
    row = result.rows()[2]
    assert row["sum"] == pytest.approx(row["sum_0"] + row["sum_1"])
    assert row["sum_1"] == pytest.approx(float(result.values[1][2].sum()))
    assert "completeness_error" in row and row["target"] == 2
    assert "integrated_gradients over 2 input(s) (4, 10), (5,), 4 example(s)" in result.summary()
    payload = json.loads(result.to_json())
    assert payload["type"] == "MultiInputAttribution" and len(payload["values"]) == 2
    figure = result.plot(example=1)
    assert len(figure.axes) >= 2
    with pytest.raises(InvalidParameterError, match="index"):
        result.part(2)
    with pytest.raises(InvalidParameterError, match="a sequence of 2 Axes"):
        result.plot(ax=[figure.axes[0]])
    assert part.plot(example=0).axes  # one input's map draws as any Attribution
    with pytest.raises(InvalidParameterError, match="a tuple of 2 tensors"):
        result.plot(inputs=inputs[0])


def test_plot_draws_a_one_hot_input_as_a_logo(two_inputs):
    model, (_, features) = two_inputs
    sequence = nn.functional.one_hot(torch.randint(0, 4, (4, 10)), 4).permute(0, 2, 1).double()
    result = deeplift(model, (sequence, features), target=0)
    figure = result.plot(example=1, inputs=(sequence, None))
    logo, bars = figure.axes[0], figure.axes[1]
    assert len(logo.patches) == 10  # one glyph per position (the observed letter), as Attribution.plot draws DNA
    assert len(bars.patches) == 5 and bars.get_title().startswith("input 1: deeplift, example 1")


@pytest.mark.parametrize("method", [integrated_gradients, deeplift, deep_lift_shap])
def test_chunks_of_one_row_give_the_same_values(two_inputs, method):
    model, inputs = two_inputs
    options = {"steps": 8} if method is integrated_gradients else {}
    whole = method(model, inputs, target=TARGETS, **options)
    chunked = method(model, inputs, target=TARGETS, max_batch=1, **options)
    for one, other in zip(whole.values, chunked.values, strict=True):
        torch.testing.assert_close(one, other, rtol=1e-10, atol=1e-13)  # float64: batching order only


def test_extra_fixed_arguments_follow_the_inputs(two_inputs):
    model, inputs = two_inputs

    class WithScale(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, a, b, scale):
            return self.inner(a, b) * scale

    scale = torch.linspace(0.5, 2.0, 4, dtype=torch.float64).unsqueeze(1)
    scaled = deeplift(WithScale(), inputs, target=TARGETS, args=(scale,))
    plain = deeplift(model, inputs, target=TARGETS)
    for with_args, without in zip(scaled.values, plain.values, strict=True):
        view = (-1,) + (1,) * (with_args.dim() - 1)
        torch.testing.assert_close(with_args, without * scale.view(view), rtol=1e-10, atol=1e-13)  # linear in scale


def test_deeplift_follows_a_product_of_the_two_inputs_and_refuses_a_division_by_one():
    """Both inputs are attributed: a product of the two gets the product rule (summation-to-delta
    holds over the sum), and a division by the second input is refused, where it is allowed while
    that input is only a fixed extra argument."""
    torch.manual_seed(8)
    first, second = nn.Linear(6, 4).double(), nn.Linear(4, 2).double()

    class Gated(nn.Module):
        def __init__(self, divide: bool):
            super().__init__()
            self.first, self.second, self.divide = first, second, divide

        def forward(self, a, b):
            hidden = torch.relu(self.first(a))
            return self.second(hidden / (1.0 + b * b) if self.divide else hidden * b)

    a, b = torch.randn(5, 6, dtype=torch.float64), torch.randn(5, 4, dtype=torch.float64)
    product = deeplift(Gated(divide=False), (a, b), target=1, baseline=(0.0, 0.5))
    assert product.values[1].abs().sum() > 0  # the gate gets its share
    assert float(product.diagnostics["completeness_error"].max()) < 1e-9
    with pytest.raises(UnsupportedModelError, match="truediv|div"):
        deeplift(Gated(divide=True), (a, b), target=1)
    fixed = deeplift(Gated(divide=True), a, target=1, args=(b,))  # b held fixed: the division is affine in a
    assert float(fixed.diagnostics["completeness_error"].max()) < 1e-9


def test_an_input_the_selected_output_does_not_use_gets_zeros(two_inputs):
    model, inputs = two_inputs

    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, a, b):
            return self.inner.conv(a)[:, :3], self.inner.dense(b)

    result = deeplift(TwoHeads(), inputs, target=1, output_fn=lambda out: out[0])
    assert torch.equal(result.values[1], torch.zeros_like(inputs[1]))
    assert float(result.diagnostics["completeness_error"].max()) < 1e-9


# ---------------------------------------------------------------------------------------------- refusals


def test_mismatched_batch_lengths_are_refused(two_inputs):
    model, (sequence, features) = two_inputs
    for method in (saliency, input_x_gradient, integrated_gradients, deeplift, deep_lift_shap):
        with pytest.raises(DataError, match=r"same batch length.*\[4, 3\]"):
            method(model, (sequence, features[:3]), target=0)


def test_methods_without_several_inputs_refuse_a_tuple_naming_those_that_take_it(two_inputs):
    model, inputs = two_inputs
    for method in (occlusion, smoothgrad, lrp, ism, expected_gradients):
        with pytest.raises(InvalidParameterError, match="taken as a tuple by saliency, input_x_gradient") as caught:
            method(model, inputs, target=0)
        assert "\n" not in str(caught.value) and "a tuple of 2 (Tensor of shape (4, 4, 10)" in str(caught.value)


def test_bad_elements_and_baselines_are_refused_by_name(two_inputs):
    model, (sequence, features) = two_inputs
    with pytest.raises(InvalidParameterError, match=r"'inputs\[1\]'.*floating-point"):
        saliency(model, (sequence, features.long()), target=0)
    with pytest.raises(InvalidParameterError, match="non-empty tuple"):
        saliency(model, (), target=0)
    with pytest.raises(InvalidParameterError, match="or a tuple of such tensors"):
        saliency(model, [sequence, features], target=0)
    with pytest.raises(InvalidParameterError, match="a tuple of 2 baselines"):
        integrated_gradients(model, (sequence, features), target=0, baseline=(0.0,), steps=4)
    with pytest.raises(InvalidParameterError, match="None, a number, or a tuple of 2 baselines"):
        input_x_gradient(model, (sequence, features), target=0, baseline=torch.zeros_like(sequence))
    with pytest.raises(InvalidParameterError, match=r"'baseline\[1\]'.*\(4, 5\) or \(5,\)"):
        deeplift(model, (sequence, features), target=0, baseline=(0.0, torch.zeros(3)))
    with pytest.raises(DataError, match="NaN"):
        input_x_gradient(model, (sequence, features * float("nan")), target=0)


def test_a_model_that_cannot_take_the_inputs_names_every_shape(two_inputs):
    model, (sequence, features) = two_inputs
    with pytest.raises(
        DataError, match=r"cannot take the 2 inputs of shapes \(4, 10\) and \(6,\) per example, model\(x1, x2\): "
    ):
        saliency(model, (sequence, torch.zeros(4, 6, dtype=torch.float64)), target=0)


# ---------------------------------------------------------------------------------------------- the caller's model and tensors


@pytest.mark.parametrize("method", [saliency, input_x_gradient, integrated_gradients, deeplift, deep_lift_shap])
def test_model_and_inputs_are_untouched(method):
    torch.manual_seed(4)
    model = TwoBranches(inplace=True).double().train()  # in place, in train mode
    model.dense = nn.Sequential(nn.ReLU(inplace=True), *model.dense)  # overwrites its input, the features
    model.dense[1].weight.grad = torch.ones_like(model.dense[1].weight)
    sequence, features = torch.randn(3, 4, 10, dtype=torch.float64), torch.randn(3, 5, dtype=torch.float64)
    kept = (sequence.clone(), features.clone())
    options = {"steps": 4} if method is integrated_gradients else {}
    result = check_model_untouched(method, model, model, (sequence, features), target=0, **options)
    assert isinstance(result, MultiInputAttribution)
    assert torch.equal(sequence, kept[0]) and torch.equal(features, kept[1])


# ---------------------------------------------------------------------------------------------- the documentation

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "attribution.md"


def test_the_documented_example_runs_as_written(capsys):
    section = DOC.read_text(encoding="utf-8").split("## Several inputs", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    namespace: dict = {}
    exec(compile(code, str(DOC), "exec"), namespace)  # noqa: S102 - our own documentation
    assert "completeness error (all inputs together) at most" in capsys.readouterr().out
    assert tuple(namespace["sequence_map"].shape) == (6, 4, 50) and tuple(namespace["track_map"].shape) == (6, 50)
    # float32 model: DeepLIFT's summation-to-delta to float32 rounding, IG to its tolerance
    assert float(namespace["dl"].diagnostics["completeness_error"].max()) < 1e-4
    ig = namespace["ig"]
    assert bool(ig.diagnostics["converged"].all()) and float(ig.diagnostics["completeness_error"].max()) < 1e-2
    assert namespace["figure"].axes[0].patches  # the sequence part is drawn as a logo
