"""attribution/_base.py: Attribution, the result every method returns (its plot and rows), and the
shared pieces the methods are built from (gradients in chunks, finish, the completeness error)."""

import matplotlib
import pytest
import torch
from torch import nn

from deepscope.attribution import saliency
from deepscope.errors import InvalidParameterError

matplotlib.use("Agg")


def _tabular_attribution():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 3))
    return saliency(model, torch.randn(4, 5), target=1)


def test_tabular_plot_uses_feature_names_and_top():
    attribution = _tabular_attribution()
    names = ["height", "weight", "age", "dose", "yield"]
    figure = attribution.plot(example=2, feature_names=names, top=3)
    labels = [tick.get_text() for tick in figure.axes[0].get_yticklabels()]
    order = attribution.values[2].abs().argsort(descending=True)[:3].tolist()
    assert labels == [names[j] for j in reversed(order)]  # largest |attribution| at the top of the chart
    default = [tick.get_text() for tick in attribution.plot().axes[0].get_yticklabels()]
    assert len(default) == 5 and all(label.startswith("x") for label in default)


@pytest.mark.parametrize(
    "kwargs, parameter",
    [
        ({"feature_names": ["a", "b"]}, "feature_names"),
        ({"feature_names": "abcde"}, "feature_names"),
        ({"top": 0}, "top"),
        ({"example": 4}, "example"),
    ],
)
def test_plot_rejects_bad_arguments(kwargs, parameter):
    with pytest.raises(InvalidParameterError, match=f"'{parameter}' parameter of Attribution.plot"):
        _tabular_attribution().plot(**kwargs)


# ----------------------------------------------------------------------------------- the shared pieces
def test_rows_one_per_target_and_example():
    from deepscope.attribution._base import Attribution

    values = torch.arange(12.0).reshape(2, 3, 2)  # 2 targets x 3 examples x 2 features
    target = torch.tensor([[0, 0, 0], [1, 1, 1]])
    result = Attribution(values, target, "m", {"steps": torch.tensor([[8, 8, 16], [8, 8, 8]])}, 6, {})
    assert result.multi_target and len(result.rows()) == 6
    assert result.rows()[4] == {"example": 1, "target": 1, "sum": 17.0, "steps": 8.0}
    single = Attribution(values[0], target[0], "m", {}, 3, {})
    assert not single.multi_target and [row["sum"] for row in single.rows()] == [1.0, 5.0, 9.0]


def test_selected_gradients_match_autograd_in_chunks():
    from deepscope.attribution._base import evaluate_selected, selected_gradients

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    points = torch.randn(5, 3)
    targets = torch.tensor([[0, 1, 0, 1, 0], [1, 1, 1, 1, 1]])
    values, gradients = selected_gradients(model, points, targets, max_batch=2)
    for t in range(2):
        x = points.clone().requires_grad_(True)
        selected = model(x).gather(1, targets[t].unsqueeze(1)).sum()
        (expected,) = torch.autograd.grad(selected, x)
        torch.testing.assert_close(gradients[t], expected)
    torch.testing.assert_close(values, evaluate_selected(model, points, targets, max_batch=3))


def test_finish_drops_the_single_target_dimension_and_refuses_nan():
    from deepscope.attribution._base import finish
    from deepscope.errors import NonFiniteError

    model = nn.Linear(2, 2)
    options = {"steps": 8, "baseline": torch.zeros(2), "tol": None}
    result = finish(model, values=torch.ones(1, 3, 2), targets=torch.zeros(1, 3, dtype=torch.long), multi=False,
                    method="m", diagnostics={"err": torch.zeros(1, 3), "note": "x"}, evaluations=3, options=options)  # fmt: skip
    assert (
        result.values.shape == (3, 2) and result.diagnostics["err"].shape == (3,) and result.diagnostics["note"] == "x"
    )
    assert result.options == {"steps": 8, "tol": None}  # tensors are not JSON-able options
    values = torch.ones(1, 7, 2)
    values[0, [1, 3, 4, 5, 6, 0], 0] = float("nan")
    with pytest.raises(NonFiniteError, match=r"^m: the attributions of 6 example\(s\) \(0, 1, 3, 4, 5, \.\.\.\)"):
        finish(model, values=values, targets=torch.zeros(1, 7, dtype=torch.long), multi=False, method="m",
               diagnostics={}, evaluations=7, options={})  # fmt: skip


def test_relative_completeness_error_and_its_floor():
    from deepscope.attribution._base import chunk_starts, relative_completeness_error

    error = relative_completeness_error(torch.tensor([1.1, 0.0]), torch.tensor([3.0, 1.0]), torch.tensor([2.0, 1.0]))
    assert error[0] == pytest.approx(0.1, rel=1e-5)
    assert error[1] == 0.0  # F(x) = F(x'), attributions sum to 0: no error, no division by zero
    assert list(chunk_starts(10, 4)) == [0, 4, 8]


# ----------------------------------------------------------------------------------- DNA logos
def _dna():
    torch.manual_seed(5)
    model = nn.Sequential(nn.Conv1d(4, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(18, 2)).double()
    x = nn.functional.one_hot(torch.randint(0, 4, (2, 8)), 4).permute(0, 2, 1).double()
    x[1, :, 3] = 0  # an N
    return model, x


def _glyphs(figure):
    """(centre x, signed height) of each letter patch of the logo, in drawing order."""
    boxes = []
    for patch in figure.axes[0].patches:
        box = patch.get_path().get_extents()
        boxes.append((round((box.x0 + box.x1) / 2), box.height if box.y1 > 1e-12 else -box.height))
    return sorted(boxes)


def test_ism_plot_with_inputs_is_a_logo_of_the_observed_bases_position_importance():
    from deepscope.attribution import ism

    model, x = _dna()
    result = ism(model, x)
    figure = result.plot(example=1, inputs=x)
    importance = result.diagnostics["position_importance"][1]
    # oracle: one glyph per position with a base (not the N at 3), as tall as the position importance;
    # the letter outline fills its box to within a rounding of the path (1e-6 of the height)
    expected = [(position, float(importance[position])) for position in range(8) if position != 3]
    found = _glyphs(figure)
    assert [p for p, _ in found] == [p for p, _ in expected]
    for (_, height), (_, want) in zip(found, expected):
        assert height == pytest.approx(want, rel=1e-6, abs=1e-9)


def test_ism_plot_without_inputs_draws_every_substitution_and_other_methods_keep_bars():
    from deepscope.attribution import ism

    model, x = _dna()
    result = ism(model, x)
    found = _glyphs(result.plot(example=0))
    substitutions = result.values[0]
    # oracle: the three substitution effects of each position (the observed letter is 0 and draws nothing)
    expected = sorted((p, float(substitutions[a, p])) for a in range(4) for p in range(8) if substitutions[a, p] != 0)
    assert len(found) == len(expected) == 3 * 8
    assert sorted(round(h, 6) for _, h in found) == sorted(round(h, 6) for _, h in expected)
    bars = saliency(model, x).plot()  # a four-channel saliency map without inputs is not known to be DNA
    assert not bars.axes[0].patches or all(type(p).__name__ == "Rectangle" for p in bars.axes[0].patches)
    logo = saliency(model, x).plot(inputs=x)
    assert {type(p).__name__ for p in logo.axes[0].patches} == {"PathPatch"}


def test_plot_rejects_inputs_that_are_not_one_hot_like_the_values():
    model, x = _dna()
    result = saliency(model, x)
    with pytest.raises(InvalidParameterError, match="'inputs' parameter of Attribution.plot"):
        result.plot(inputs=x[:, :, :5])
    with pytest.raises(InvalidParameterError, match="'inputs' parameter of Attribution.plot"):
        result.plot(inputs=x * 0.5)
