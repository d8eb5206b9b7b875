import json

import torch

from deepscope.models import build, train
from deepscope.models.history import TrainingHistory
from deepscope.problem import Problem
from deepscope.report.model_sections import as_history, model_card_section, training_section
from deepscope.report.sections import SECTIONS, AuditContext, Figure, Table, Text
from deepscope.results import to_jsonable
from deepscope.testing import check_model_untouched, make_fixture


def small_problem():
    fixture = make_fixture("cnn")
    return fixture, fixture.problem()


def strict_json(results):
    return json.loads(json.dumps(to_jsonable(results), allow_nan=False))


def test_sections_are_registered_in_order():
    assert SECTIONS["model_card"].order == 10 and SECTIONS["model_card"].builder is model_card_section
    assert SECTIONS["training"].order == 20 and SECTIONS["training"].builder is training_section


def test_model_card_on_a_small_problem():
    fixture, problem = small_problem()
    section = check_model_untouched(model_card_section, fixture.model, AuditContext(problem=problem, model_name="cnn"))
    total = sum(p.numel() for p in fixture.model.parameters())
    assert section.summary.startswith(f"cnn has {total:,} parameters")
    kinds = [type(block) for block in section.blocks]
    assert Table in kinds and Figure in kinds
    assert section.blocks[-1].svg.startswith("<svg")
    architecture = [b for b in section.blocks if isinstance(b, Table) and b.caption.startswith("Architecture")][0]
    assert architecture.rows[0]["output shape"] == "4 × 8 × 8"
    assert strict_json(section.results)["model_summary"]["total_parameters"] == total


def test_training_section_with_history_shows_curves_and_gap():
    fixture, problem = small_problem()
    run = train(fixture.model, ((problem.train.x, problem.train.y), (problem.test.x, problem.test.y)), epochs=2)
    for history in (run.history, run, run.history.to_dict()):
        section = training_section(AuditContext(problem=problem, history=history))
        assert section.summary.startswith("After 2 epochs")
        assert any(isinstance(b, Figure) for b in section.blocks)
        results = strict_json(section.results)
        assert results["history"]["epoch"] == [0, 1, 2]
        assert results["generalization_gap"]["n_test"] == 8


def test_training_section_without_history_evaluates_the_model():
    fixture, problem = small_problem()
    section = check_model_untouched(training_section, fixture.model, AuditContext(problem=problem))
    assert "did not train" in section.summary
    assert not any(isinstance(b, Figure) for b in section.blocks)
    assert any(isinstance(b, Text) and "no learning curves" in b.text for b in section.blocks)
    results = strict_json(section.results)
    expected = problem.evaluate("test")
    assert results["evaluation"][1]["accuracy"] == expected.accuracy
    assert results["generalization_gap"]["gap"] == (1 - expected.accuracy) - (1 - problem.evaluate("train").accuracy)


def test_training_section_for_regression_without_test_split():
    x = torch.randn(20, 3)
    model = torch.nn.Sequential(torch.nn.Linear(3, 1), torch.nn.Flatten(0))
    problem = Problem(model, (x, x.sum(dim=1)), loss="mse")
    section = training_section(AuditContext(problem=problem))
    assert "train loss" in section.summary
    assert any(isinstance(b, Text) and "no test split" in b.text for b in section.blocks)


def test_model_card_on_a_digits_cnn():
    torch.manual_seed(0)
    model = build("cnn2d", (1, 8, 8), 10)
    x, y = torch.rand(12, 1, 8, 8), torch.arange(12) % 10
    section = model_card_section(AuditContext(problem=Problem(model, (x, y)), model_name="cnn2d"))
    assert "uses ReLU" in section.summary


def test_as_history_rejects_other_things():
    assert as_history(None) is None
    assert as_history({"something": 1}) is None
    assert isinstance(as_history({"train_loss": [1.0, 0.5]}), TrainingHistory)
