"""Non-finite weights: every analysis that runs the model refuses them, naming the parameter and layer.

A model whose training diverged holds NaN weights; every output, and so every result, would be NaN.
Problem, the attribution methods and (through the registry) every registered analysis that runs
the model refuse it with a NonFiniteError; model_summary describes it and flags the culprit.
"""

import pytest
import torch
from torch import nn

from deepscope import Problem
from deepscope._finite import check_finite_model, nonfinite_tensors
from deepscope.errors import NonFiniteError, UnsupportedModelError
from deepscope.models import model_summary
from deepscope.registry import load_all_analyses
from deepscope.testing import check_model_untouched, make_fixture

ANALYSES = load_all_analyses()
RUNS_THE_MODEL = sorted(name for name, spec in ANALYSES.items() if spec.takes != "model")


def _poison(model, value=float("nan")):
    """Put one non-finite value in the last Linear layer's weight; return that layer's name."""
    name = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        dict(model.named_modules())[name].weight[0, 0] = value
    return name


@pytest.mark.parametrize("name", RUNS_THE_MODEL)
def test_every_analysis_that_runs_the_model_refuses_nan_weights(name):
    spec = ANALYSES[name]
    fixture = make_fixture(spec.fixture)
    if spec.takes == "problem":
        args = (fixture.problem(),)  # built while the weights were finite
    else:
        args = (fixture.model, fixture.inputs[:8])
    layer = _poison(fixture.model)
    with pytest.raises(NonFiniteError, match=rf"{name}: the model's weights are not finite: '{layer}\.weight' "):
        check_model_untouched(spec.function, fixture.model, *args, **dict(spec.example_kwargs))


def test_the_error_is_an_unsupported_model_error_and_names_the_type_and_count():
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2))
    _poison(model, float("-inf"))
    with torch.no_grad():
        model[0].bias.fill_(float("nan"))
    assert nonfinite_tensors(model) == [("0.bias", 3, 3), ("2.weight", 1, 6)]
    with pytest.raises(
        UnsupportedModelError,
        match=r"'0\.bias' \(layer '0', Linear\) has 3 of 3 values NaN or infinite; so do 1 more tensor\(s\): '2\.weight'",
    ):
        check_finite_model(model, "owner")


def test_a_problem_refuses_and_the_summary_flags_the_same_model():
    fixture = make_fixture("mlp")
    layer = _poison(fixture.model, float("inf"))
    with pytest.raises(NonFiniteError, match=rf"Problem: .*'{layer}\.weight'"):
        fixture.problem()
    summary = model_summary(fixture.model, input_shape=(6,))
    assert [entry["name"] for entry in summary.nonfinite] == [f"{layer}.weight"]
    assert "not finite" in summary.sentence()


def test_finite_weights_with_an_infinite_mask_buffer_pass():
    model = nn.Linear(2, 2)
    model.register_buffer("mask", torch.tensor([0.0, float("-inf")]))
    assert nonfinite_tensors(model) == []
    check_finite_model(model, "owner")
    assert Problem(model, (torch.randn(4, 2), torch.tensor([0, 1, 0, 1]))).evaluate().n == 4


def test_cli_audit_of_a_nan_model_writes_the_model_card_and_exits_2_with_one_error_line(tmp_path):
    """`deepscope audit` on a diverged model: the report shows the model card's WARNING, the CLI one error line."""
    import json

    import numpy as np
    from click.testing import CliRunner

    from deepscope.cli import main
    from deepscope.io import save_model
    from deepscope.models import build

    torch.manual_seed(0)
    model = build("mlp", (4,), 3)
    layer = _poison(model)
    path = save_model(model, tmp_path / "model.safetensors")
    np.savez(
        tmp_path / "data.npz", x=np.random.default_rng(0).normal(size=(40, 4)).astype("float32"), y=np.arange(40) % 3
    )
    out = tmp_path / "report"
    args = ["audit", "--model", str(path), "--data", str(tmp_path / "data.npz"), "--out", str(out)]
    with CliRunner().isolation() as (_, stderr, _):
        code = main([*args, "--sections", "model_card,training"])
    errors = [line for line in stderr.getvalue().decode().splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1, stderr.getvalue()
    assert f"'{layer}.weight' (layer '{layer}', Linear)" in errors[0] and "report.html" in errors[0]
    sections = json.loads((out / "results.json").read_text())["sections"]
    assert "WARNING: its weights are not finite" in sections["model_card"]["summary"]
    assert sections["training"]["status"] == "error" and "not finite" in sections["training"]["error"]
