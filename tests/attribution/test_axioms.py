import dataclasses

import pytest
import torch
from torch import nn

from deepscope.attribution import Attribution, check_axioms, integrated_gradients, lrp
from deepscope.errors import InvalidParameterError


def statuses(report):
    return {check["axiom"]: check["status"] for check in report.checks}


def test_integrated_gradients_keeps_every_claim_on_a_smooth_model(mlp_and_rows):
    _, rows = mlp_and_rows
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).double()
    report = check_axioms(model, rows, method="integrated_gradients", steps=None, tol=1e-6, completeness_tolerance=1e-5)
    assert report.violated_claims == []
    assert set(statuses(report).values()) == {"held"}


def test_shapley_keeps_every_claim_on_a_relu_net(mlp_and_rows):
    model, rows = mlp_and_rows
    report = check_axioms(model, rows[:3], method="shapley")
    assert report.violated_claims == [] and statuses(report)["completeness"] == "held"


def test_absolute_saliency_is_not_linear(mlp_and_rows):
    model, rows = mlp_and_rows
    report = check_axioms(model, rows, method="saliency")
    linearity = next(c for c in report.checks if c["axiom"] == "linearity")
    # |2g0 − 0.5g1| ≠ 2|g0| − 0.5|g1| wherever the gradients have mixed signs
    assert linearity["status"] == "violated" and not linearity["claimed"] and linearity["magnitude"] > 0.01


def test_a_broken_method_is_caught_with_its_magnitude(mlp_and_rows):
    _, rows = mlp_and_rows
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).double()

    def inflated(model, inputs, target=None, *, baseline=None, **options):
        result = integrated_gradients(model, inputs, target, baseline=baseline, steps=None, tol=1e-8, **options)
        return dataclasses.replace(result, values=1.5 * result.values)

    report = check_axioms(model, rows, method=inflated, axioms=("completeness", "dummy"))
    completeness = report.checks[0]
    # Σφ = 1.5 ΔF (up to the 1e-8 quadrature error): relative error 0.5
    assert completeness["status"] == "violated" and abs(completeness["magnitude"] - 0.5) < 1e-3
    assert report.checks[1]["status"] == "held"


def test_a_method_that_spreads_scores_everywhere_fails_dummy(mlp_and_rows):
    model, rows = mlp_and_rows

    def uniform(model, inputs, target=None, **options):
        reference = integrated_gradients(model, inputs, target, steps=4)
        return dataclasses.replace(reference, values=torch.ones_like(inputs))

    report = check_axioms(model, rows, method=uniform, axioms=("dummy", "symmetry"))
    assert statuses(report) == {"dummy": "violated", "symmetry": "held"}
    assert report.checks[0]["magnitude"] == pytest.approx(1.0)


def test_lrp_conservation_on_a_bias_free_net(make_relu_mlp):
    model = make_relu_mlp(bias=False)
    rows = torch.randn(4, 5, dtype=torch.float64)
    report = check_axioms(model, rows, method=lrp, axioms=("conservation", "implementation_invariance"))
    assert statuses(report)["conservation"] == "held"
    with_bias = check_axioms(make_relu_mlp(), rows, method="lrp", axioms=("conservation",))
    # biases absorb relevance: reported as a violation with its size, not hidden
    assert with_bias.checks[0]["magnitude"] > 1e-3


def test_deeplift_summation_to_delta(cnn_and_images):
    model, images = cnn_and_images
    report = check_axioms(model, images[:2], method="deeplift", axioms=("completeness", "dummy", "linearity"))
    assert report.violated_claims == []
    assert isinstance(report.rows()[0]["magnitude"], float)


def test_bad_arguments(mlp_and_rows):
    model, rows = mlp_and_rows
    with pytest.raises(InvalidParameterError, match="method"):
        check_axioms(model, rows, method="astrology")
    with pytest.raises(InvalidParameterError, match="target"):
        check_axioms(model, rows, target=[0, 1])
    with pytest.raises(InvalidParameterError, match="axioms"):
        check_axioms(model, rows, axioms=("beauty",))
    assert isinstance(check_axioms(model, rows, method="saliency", axioms=("dummy",)).to_json(), str)
    assert Attribution  # the result type the methods return


@pytest.mark.parametrize(
    ("method", "typo"), [("integrated_gradients", "stpes"), ("saliency", "tolerence"), ("occlusion", "windows")]
)
def test_a_misspelled_keyword_is_reported_by_check_axioms(method, typo):
    net = torch.nn.Sequential(torch.nn.Linear(4, 3))
    with pytest.raises(
        InvalidParameterError, match=f"check_axioms got an unknown keyword argument '{typo}'.*options of {method}"
    ):
        check_axioms(net, torch.randn(2, 4), method=method, **{typo: 10})
