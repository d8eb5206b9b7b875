import json

import torch
from torch import nn

from deepscope.curvature.report_section import build_curvature_section
from deepscope.dynamics.monitor import Monitor
from deepscope.report.sections import SECTIONS, AuditContext, Figure, Table
from deepscope.testing import check_model_untouched, make_fixture


def test_section_is_registered_with_its_order():
    assert SECTIONS["curvature"].order == 60 and SECTIONS["curvature"].title == "Curvature"


def test_quick_section_on_the_cnn_fixture_with_learning_rate_and_monitor_history():
    fixture = make_fixture("cnn")
    problem = fixture.problem()
    # a short monitored run on a copy gives a dynamics history for the section
    import copy

    student = copy.deepcopy(fixture.model)
    monitor = Monitor(student, loss_fn=nn.functional.cross_entropy, every=2)
    optimizer = torch.optim.SGD(student.parameters(), lr=0.05)
    for _ in range(3):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(student(fixture.inputs), fixture.targets)
        loss.backward()
        optimizer.step()
        monitor.step(loss=loss.item(), lr=0.05, inputs=fixture.inputs, targets=fixture.targets)
    context = AuditContext(problem=problem, learning_rate=0.05, history={"monitor": monitor.result()}, budget="quick")
    section = check_model_untouched(build_curvature_section, fixture.model, context)
    assert "largest Hessian eigenvalue" in section.summary and "2/η" in section.summary and "below" in section.summary
    # density, 1-D, 2-D; the Monitor's dynamics are the training section's (deepscope.dynamics.report_section)
    assert sum(isinstance(b, Figure) for b in section.blocks) == 3
    assert any(isinstance(b, Table) for b in section.blocks)
    results = json.loads(json.dumps(section.results, allow_nan=True))
    # the reported sharpness ratio is the top eigenvalue over 2/η
    ratio = results["sharpness_vs_two_over_lr"]
    assert abs(ratio["ratio"] - ratio["sharpness"] * 0.05 / 2) < 1e-12
    assert {"hessian_eigenvalues", "hessian_trace", "ntk", "loss_surface", "loss_interpolation"} <= set(results)
    assert "dynamics" not in results


def test_full_budget_adds_per_layer_curvature():
    fixture = make_fixture("mlp")
    section = build_curvature_section(AuditContext(problem=fixture.problem(), budget="full"))
    layers = section.results["hessian_by_layer"]
    # the mlp fixture's trainable layers (its first weight is frozen, its bias is not)
    assert [row["layer"] for row in layers] == ["0", "1", "4", "6"]
    assert "2/η" not in section.summary  # no learning rate known


def test_a_failing_estimate_leaves_the_rest_of_the_section(monkeypatch):
    import deepscope.curvature.report_section as module
    from deepscope.report.sections import Html

    def broken(*args, **kwargs):
        raise RuntimeError("no Lanczos today")

    monkeypatch.setattr(module, "hessian_eigenvalues", broken)
    fixture = make_fixture("mlp")
    context = AuditContext(problem=fixture.problem(), learning_rate=0.05, budget="quick")
    section = build_curvature_section(context)
    assert section.summary == "The Hessian could not be estimated (see the error below)."
    assert section.results["block_errors"] == ["Hessian spectrum and trace: RuntimeError: no Lanczos today"]
    # the density, NTK and landscape blocks are still there; the sharpness needs the spectrum and is left out
    assert {"hessian_density", "ntk", "loss_interpolation", "loss_surface"} <= set(section.results)
    assert "sharpness_vs_two_over_lr" not in section.results and "hessian_eigenvalues" not in section.results
    assert sum(isinstance(b, Html) for b in section.blocks) == 1
    assert sum(isinstance(b, Figure) for b in section.blocks) == 3
