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


def _priced(problem, unit_seconds, budget="quick"):
    """A context whose measured pass cost is replaced by ``unit_seconds`` per example (deterministic)."""
    from deepscope.report.cost import PassCost

    context = AuditContext(problem=problem, budget=budget)
    parameters = sum(p.numel() for p in problem.model.parameters() if p.requires_grad)
    context.cache["report.pass_cost"] = PassCost(unit_seconds, unit_seconds / 3, parameters, 4)
    return context


def test_blocks_that_cannot_fit_the_budget_decline_in_one_line():
    # at 100 s per example pass not even one Hessian-vector product fits the 20 s block budget
    fixture = make_fixture("mlp")
    context = _priced(fixture.problem(), 100.0)
    section = check_model_untouched(build_curvature_section, fixture.model, context)
    assert section.summary == "The Hessian was not estimated: it does not fit this budget (see below)."
    assert "block_errors" not in section.results and "hessian_eigenvalues" not in section.results
    texts = [b.text for b in section.blocks if hasattr(b, "text")]
    assert any(t.startswith("Hessian spectrum and trace declined: it would take about") for t in texts)
    assert all("\n" not in t for t in texts)
    declined = [cost["block"] for cost in section.costs if cost.get("declined")]
    # the mlp fixture has initial weights, so the interpolation block is there too
    assert declined == [
        "Hessian spectrum and trace",
        "Eigenvalue density",
        "Neural tangent kernel",
        "Loss from initial to final weights",
        "Loss surface",
    ]


def test_samples_shrink_to_fit_and_the_text_says_so():
    # 20 s x 2 shares / (0.05 s x (30 + 20) HVPs x 8 passes) = 2 samples for the spectrum and trace
    from deepscope.curvature.report_section import HVP_PASSES

    fixture = make_fixture("mlp")
    context = _priced(fixture.problem(), 0.05)
    section = build_curvature_section(context)
    expected = int(2 * 20.0 / 0.05 // ((30 + 20) * HVP_PASSES))
    assert expected == 2
    assert section.results["hessian_eigenvalues"]["n_samples"] == expected
    assert f"on {expected} samples ({expected} of the budget's" in section.blocks[0].text
    spectrum = section.costs[0]
    assert spectrum["block"] == "Hessian spectrum and trace" and spectrum["samples"] == expected
    assert spectrum["estimated_seconds"] <= spectrum["budget_seconds"]


def test_ntk_is_sketched_with_its_error_when_the_jacobian_would_not_fit(monkeypatch):
    import deepscope.curvature.report_section as module

    monkeypatch.setattr(module, "_NTK_MEMORY_MB", 0.0)
    fixture = make_fixture("mlp")
    section = build_curvature_section(AuditContext(problem=fixture.problem(), budget="quick"))
    assert section.results["ntk"]["method"] == "sketch"
    assert section.results["ntk"]["eigenvalue_error"] > 0
    assert any("count-sketched" in getattr(b, "text", "") for b in section.blocks)


def test_the_lanczos_basis_is_capped_to_its_memory(monkeypatch):
    # oracle: the cap by hand, 8 bytes x parameters x vectors <= the budget
    import deepscope.curvature.report_section as module

    fixture = make_fixture("mlp")
    problem = fixture.problem()
    parameters = sum(p.numel() for p in problem.model.parameters() if p.requires_grad)
    monkeypatch.setattr(module, "_KRYLOV_BYTES", 8.0 * parameters * 12)  # room for 12 vectors
    section = build_curvature_section(AuditContext(problem=problem, budget="quick"))
    spectrum = section.results["hessian_eigenvalues"]
    assert spectrum["n_hvps"] <= 12
    assert "capped at 12 of 30 vectors" in section.blocks[0].text
    monkeypatch.setattr(module, "_KRYLOV_BYTES", 8.0 * parameters * 4)  # fewer than k + 2 = 5 vectors
    section = build_curvature_section(AuditContext(problem=problem, budget="quick"))
    assert "hessian_eigenvalues" not in section.results and "block_errors" not in section.results
    assert section.blocks[0].text.startswith("Hessian spectrum and trace — not applicable: A Lanczos basis of 5")
