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
    assert "Exact linear regions — not applicable: exact linear regions exist only for piecewise-linear" in texts
    assert "lipschitz" in section.results and "linear_regions" not in section.results
    assert "block_errors" not in section.results
    assert [c["block"] for c in section.costs if c.get("not_applicable")] == ["Linear regions"]


class _GlobalMaxCNN(nn.Module):
    """A sequence CNN ending in a global max over positions (``amax``), which regions and Lipschitz cannot follow."""

    def __init__(self):
        super().__init__()
        self.conv, self.head = nn.Conv1d(4, 6, 3), nn.Linear(6, 2)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).amax(-1))


def test_a_layer_an_analysis_cannot_follow_is_one_line_not_an_error_box():
    from deepscope.expressivity.report_section import build_expressivity_section

    torch.manual_seed(0)
    x = torch.nn.functional.one_hot(torch.randint(0, 4, (24, 20)), 4).permute(0, 2, 1).float()
    section = build_expressivity_section(
        AuditContext(problem=Problem(_GlobalMaxCNN(), (x, torch.randint(0, 2, (24,)))))
    )
    assert "block_errors" not in section.results  # before: two error boxes naming 'amax'
    reasons = [b.text for b in section.blocks if "— not applicable:" in getattr(b, "text", "")]
    assert any(r.startswith("Linear regions — not applicable:") and "amax" in r for r in reasons)
    assert any(r.startswith("Lipschitz bounds — not applicable:") and "amax" in r for r in reasons)


class _TokenClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(20, 8)
        self.head = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))

    def forward(self, ids):
        return self.head(self.embed(ids).mean(1))


def test_token_inputs_give_one_line_reasons_and_no_errors():
    from deepscope.expressivity.report_section import build_expressivity_section

    torch.manual_seed(0)
    ids, y = torch.randint(0, 20, (24, 6)), torch.randint(0, 3, (24,))
    section = build_expressivity_section(AuditContext(problem=Problem(_TokenClassifier(), (ids, y))))
    assert "block_errors" not in section.results
    texts = [block.text for block in section.blocks if hasattr(block, "text")]
    reasons = [t for t in texts if "— not applicable:" in t]
    assert len(reasons) == 6  # regions, capacity, mean field (embeddings), health, trajectory, Lipschitz
    assert all("\n" not in t for t in reasons)
    assert sum("this model's inputs are integer token ids" in t for t in reasons) == 5
    assert any(t.startswith("The mean-field verdict — not applicable: initialization_verdict applies") for t in reasons)
    assert section.summary == "No expressivity analysis applied to this model (each block below says why)."


def test_blocks_decline_when_the_budget_is_too_small():
    from deepscope.expressivity.report_section import build_expressivity_section
    from deepscope.report.cost import PassCost

    fixture = make_fixture("relu_mlp")
    context = AuditContext(problem=fixture.problem(), budget="quick")
    context.cache["report.pass_cost"] = PassCost(100.0, 100.0 / 3, 10, 4)  # 100 s per example pass
    section = build_expressivity_section(context)
    assert "block_errors" not in section.results
    declined = [c["block"] for c in section.costs if c.get("declined")]
    assert declined == ["Linear regions", "Layer health", "Trajectory length", "Lipschitz bounds"]
    texts = [block.text for block in section.blocks if hasattr(block, "text")]
    assert any(t.startswith("Exact linear regions declined: it would take about") for t in texts)


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
    assert section.summary.startswith("The network's exact partition has ")
    (box,) = [block for block in section.blocks if isinstance(block, Html)]
    assert "Layer health failed" in box.html
