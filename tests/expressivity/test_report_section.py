"""The "expressivity" report section builds on a CNN and on a smooth model, within its budget."""

import torch
from torch import nn

from deepscope.problem import Problem
from deepscope.report.sections import SECTIONS, AuditContext
from deepscope.testing import make_fixture


def test_section_on_the_cnn_fixture():
    from deepscope.expressivity.report_section import build_expressivity_section

    fixture = make_fixture("cnn")
    section = build_expressivity_section(AuditContext(problem=fixture.problem(), budget="quick"))
    assert "linear regions" in section.summary and "Lipschitz" in section.summary
    results = section.results
    assert results["linear_regions"]["count"] >= 1
    assert results["linear_regions"]["max_abs_error"] < 1e-9
    assert results["lipschitz"]["lower"] <= results["lipschitz"]["upper"]
    assert results["initialization_verdict"]["phase"] in ("ordered", "critical", "chaotic")
    assert results["trajectory_length"]["layers"][0]["depth"] == 0
    assert "layer_health" in results
    assert results["segment"]["count"] >= 1 and results["segment"]["hanin_rolnick_expected"] >= 1
    assert any(getattr(block, "svg", "").startswith("<svg") for block in section.blocks)
    assert SECTIONS["expressivity"].order == 50
    assert fixture.model.training  # the caller's model is untouched (train flags restored)


def test_section_explains_what_does_not_apply():
    from deepscope.expressivity.report_section import build_expressivity_section

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    x, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    section = build_expressivity_section(AuditContext(problem=Problem(model, (x, y))))
    texts = " ".join(getattr(block, "text", "") for block in section.blocks)
    assert "not available" in texts and "Tanh" in texts
    assert "lipschitz" in section.results and "linear_regions" not in section.results


def test_a_block_that_raises_leaves_the_rest_of_the_section(monkeypatch):
    import deepscope.expressivity.report_section as module
    from deepscope.report.sections import Html

    def broken(*args, **kwargs):
        raise RuntimeError("no health today")

    monkeypatch.setattr(module, "layer_health", broken)
    fixture = make_fixture("relu_mlp")
    section = module.build_expressivity_section(AuditContext(problem=fixture.problem(), budget="quick"))
    assert section.results["block_errors"] == ["Layer health: RuntimeError: no health today"]
    assert "layer_health" not in section.results
    assert {"linear_regions", "capacity", "initialization_verdict", "trajectory_length", "lipschitz"} <= set(
        section.results
    )
    assert "linear regions" in section.summary and "Lipschitz" in section.summary
    (box,) = [block for block in section.blocks if isinstance(block, Html)]
    assert "Layer health failed" in box.html
