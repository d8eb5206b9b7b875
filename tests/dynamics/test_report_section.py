import json

import torch

from deepscope.dynamics.monitor import Monitor
from deepscope.dynamics.report_section import as_history, training_section
from deepscope.models import train
from deepscope.models.history import TrainingHistory
from deepscope.problem import Problem
from deepscope.report.sections import SECTIONS, AuditContext, Figure, Table, Text
from deepscope.results import to_jsonable
from deepscope.testing import check_model_untouched, make_fixture


def small_problem():
    fixture = make_fixture("cnn")
    return fixture, fixture.problem()


def strict_json(results):
    return json.loads(json.dumps(to_jsonable(results), allow_nan=False))


def test_the_training_section_is_registered_by_the_dynamics_family():
    assert SECTIONS["training"].order == 20 and SECTIONS["training"].builder is training_section


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


def test_as_history_rejects_other_things():
    assert as_history(None) is None
    assert as_history({"something": 1}) is None
    assert isinstance(as_history({"train_loss": [1.0, 0.5]}), TrainingHistory)


def _monitored_history(fixture):
    """A short monitored SGD run on a copy of the fixture's model."""
    import copy

    student = copy.deepcopy(fixture.model)
    monitor = Monitor(student, loss_fn=torch.nn.functional.cross_entropy, every=2)
    optimizer = torch.optim.SGD(student.parameters(), lr=0.05)
    for _ in range(3):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(student(fixture.inputs), fixture.targets)
        loss.backward()
        optimizer.step()
        monitor.step(loss=loss.item(), lr=0.05, inputs=fixture.inputs, targets=fixture.targets)
    return monitor.result()


def test_training_section_draws_the_monitor_dynamics():
    fixture, problem = small_problem()
    dynamics = _monitored_history(fixture)
    section = check_model_untouched(
        training_section, fixture.model, AuditContext(problem=problem, history={"monitor": dynamics})
    )
    figures = [b for b in section.blocks if isinstance(b, Figure)]
    assert [f.caption for f in figures] == ["Training dynamics recorded by the Monitor"]
    assert strict_json(section.results)["dynamics"] == strict_json(dynamics.rows())
    assert "block_errors" not in section.results


def test_a_failing_dynamics_plot_leaves_the_rest_of_the_training_section(monkeypatch):
    fixture, problem = small_problem()
    dynamics = _monitored_history(fixture)

    def broken_plot(self):
        raise RuntimeError("no plot today")

    monkeypatch.setattr(type(dynamics), "plot", broken_plot)
    section = training_section(AuditContext(problem=problem, history={"monitor": dynamics}))
    assert "did not train" in section.summary
    assert any(isinstance(b, Table) and b.caption == "Evaluation" for b in section.blocks)
    assert section.results["block_errors"] == ["Training dynamics: RuntimeError: no plot today"]
    assert "dynamics" not in section.results
