"""Tests for audit(): it builds the Problem and AuditContext right and leaves the model untouched."""

import json

import pytest
import torch

from deepscope import DataError, InvalidParameterError
from deepscope.data import DatasetSplits
from deepscope.errors import NonFiniteError
from deepscope.report import SECTIONS, Section, audit, register_section
from deepscope.testing import fingerprint_differences, make_fixture, model_fingerprint

SEEN = []


def _recording_section(context):
    """Record the context and measure something that depends on the model."""
    SEEN.append(context)
    train_eval = context.problem.evaluate("train")
    return Section(summary="Recorded.", results={"train_loss": train_eval.loss, "n": train_eval.n})


@pytest.fixture
def recording_section():
    SEEN.clear()
    register_section("zz_recording", title="Recording", order=1001)(_recording_section)
    yield "zz_recording"
    SECTIONS.pop("zz_recording", None)
    SEEN.clear()


def _tabular():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3))
    train = (torch.randn(30, 5), torch.randint(0, 3, (30,)))
    test = (torch.randn(10, 5), torch.randint(0, 3, (10,)))
    return model, train, test


def test_pair_data_builds_problem_and_context(recording_section, tmp_path):
    model, train, test = _tabular()
    init = {k: v.clone() for k, v in model.state_dict().items()}
    history = {"epoch": [1]}
    paths = audit(
        model, (train, test), out=tmp_path, sections=[recording_section], budget="full", history=history,
        learning_rate=0.05, seed=7, init_state=init,
    )  # fmt: skip
    (context,) = SEEN
    assert context.problem.model is model
    assert len(context.problem.train) == 30 and len(context.problem.test) == 10
    assert context.problem.loss_name == "cross_entropy"
    assert context.dataset is None
    assert context.history is history
    assert (context.learning_rate, context.budget, context.seed) == (0.05, "full", 7)
    assert context.model_name == "Sequential"
    assert torch.equal(context.problem.init_state["0.weight"], init["0.weight"])
    results = json.loads(paths.json.read_text())
    # Oracle: the section's training loss is the plain cross-entropy of the model on the train split.
    with torch.no_grad():
        expected = float(torch.nn.functional.cross_entropy(model(train[0]), train[1]))
    assert results["sections"][recording_section]["results"]["train_loss"] == pytest.approx(expected, rel=1e-6)
    assert results["budget"] == "full" and results["seed"] == 7


def test_dataset_splits_and_custom_loss(recording_section, tmp_path):
    model, train, test = _tabular()
    splits = DatasetSplits("toy", train[0], train[1], test[0], test[1], num_classes=3, description="A toy set.")
    paths = audit(model, splits, out=tmp_path, sections=[recording_section], loss="nll", model_name="toy mlp")
    (context,) = SEEN
    assert context.dataset is splits
    assert context.problem.loss_name == "nll"
    results = json.loads(paths.json.read_text())
    assert results["dataset"]["name"] == "toy" and results["dataset"]["description"] == "A toy set."
    assert results["model_name"] == "toy mlp"
    page = paths.html.read_text()
    assert "<dt>Data</dt><dd>toy, 30 train / 10 test examples, input shape (5), 3 classes</dd>" in page
    assert "<dt>Source</dt><dd>A toy set.</dd>" in page


def test_every_registered_section_leaves_the_model_untouched(tmp_path):
    fixture = make_fixture("cnn")  # train mode, BatchNorm + Dropout, a hook, grads, a frozen parameter
    before = model_fingerprint(fixture.model)
    half = len(fixture.inputs) // 2
    data = ((fixture.inputs[:half], fixture.targets[:half]), (fixture.inputs[half:], fixture.targets[half:]))
    paths = audit(fixture.model, data, out=tmp_path, budget="quick")
    after = model_fingerprint(fixture.model)
    assert before.keys() == after.keys()
    for key in before:
        if key in ("data", "grads"):
            for name, tensor in before[key].items():
                other = after[key][name]
                assert (tensor is None and other is None) or torch.equal(tensor, other), (key, name)
        else:
            assert before[key] == after[key], key
    results = json.loads(paths.json.read_text())
    assert set(results["sections"]) == set(SECTIONS)
    for name, entry in results["sections"].items():
        # every registered section must run on the standard fixture; "error" is a failure here
        assert entry["status"] == "ok", (name, entry.get("error"))


def test_shape_mismatch_is_a_data_error(tmp_path):
    model, train, test = _tabular()
    wrong = ((torch.randn(8, 7), torch.randint(0, 3, (8,))), None)
    with pytest.raises(DataError, match="cannot take the training inputs"):
        audit(model, wrong, out=tmp_path)
    assert not (tmp_path / "report.html").exists()


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"budget": "medium"}, "'budget' parameter of audit"),
        ({"seed": -1}, "'seed' parameter of audit"),
        ({"learning_rate": 0.0}, "'learning_rate' parameter of audit"),
        ({"learning_rate": float("inf")}, "'learning_rate' parameter of audit must be a finite float > 0.0. Got inf"),
        ({"model_name": 3}, "'model_name' parameter of audit"),
        ({"data": "digits"}, "'data' parameter of audit"),
        ({"model": "model.pt"}, "'model' parameter of audit"),
    ],
)
def test_bad_arguments(tmp_path, overrides, match):
    model, train, test = _tabular()
    arguments = {"model": model, "data": (train, test), "out": tmp_path, **overrides}
    with pytest.raises(InvalidParameterError, match=match):
        audit(arguments.pop("model"), arguments.pop("data"), **arguments)


def test_non_finite_weights_write_the_model_card_with_its_warning_and_every_other_section_refuses(tmp_path):
    """Problem refuses a NaN model; audit still writes the report so its model card can show where, then raises."""
    model, train, test = _tabular()
    with torch.no_grad():
        model[2].weight[1, 4] = float("nan")
    before = model_fingerprint(model)
    with pytest.raises(
        NonFiniteError, match=r"^audit: the model's weights are not finite: '2\.weight' \(layer '2', Linear\)"
    ) as caught:
        audit(model, (train, test), out=tmp_path, sections=["model_card", "training", "generalization"])
    assert str(tmp_path / "report.html") in str(caught.value)
    sections = json.loads((tmp_path / "results.json").read_text())["sections"]
    assert sections["model_card"]["status"] == "ok"
    assert "WARNING: its weights are not finite: '2.weight'" in sections["model_card"]["summary"]
    for key in ("training", "generalization"):
        assert sections[key]["status"] == "error"
        assert sections[key]["error"].startswith(
            "NonFiniteError: Problem: the model's weights are not finite: '2.weight'"
        )
    assert "WARNING: its weights are not finite" in (tmp_path / "report.html").read_text()
    assert fingerprint_differences(before, model_fingerprint(model)) == []  # bitwise: NaN == NaN


def test_non_finite_weights_with_bad_data_report_the_data(tmp_path):
    """The stand-in for the refused Problem still checks the data: a NaN input is its own clear error."""
    model, train, test = _tabular()
    with torch.no_grad():
        model[0].bias[0] = float("inf")
    bad = (train[0].clone().fill_(float("nan")), train[1])
    with pytest.raises(DataError, match="train inputs contain NaN"):
        audit(model, (bad, test), out=tmp_path, sections=["model_card"])
    assert not (tmp_path / "report.html").exists()


def test_output_fn_picks_the_scores_of_a_model_returning_a_dict(tmp_path):
    # oracle: the training section's accuracy equals the accuracy of the selected logits by hand
    class DictModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(4, 3)

        def forward(self, x):
            return {"logits": self.linear(x), "hidden": x}

    torch.manual_seed(0)
    model = DictModel()
    x, y = torch.randn(30, 4), torch.randint(0, 3, (30,))
    with pytest.raises(DataError, match="output_fn"):
        audit(model, ((x, y), None), out=tmp_path / "refused", sections=["training"])
    paths = audit(
        model, ((x, y), None), out=tmp_path / "ok", sections=["training"], output_fn=lambda out: out["logits"]
    )
    section = json.loads(paths.json.read_text())["sections"]["training"]
    assert section["status"] == "ok"
    expected = float((model(x)["logits"].argmax(1) == y).float().mean())
    assert section["results"]["evaluation"][0]["accuracy"] == pytest.approx(expected)
