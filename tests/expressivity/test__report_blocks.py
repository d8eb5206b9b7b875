"""Plumbing of the expressivity section's blocks (deepscope/expressivity/_report_blocks.py)."""

import pytest
import torch

from deepscope.errors import UnsupportedModelError
from deepscope.expressivity import _report_blocks as blocks_module
from deepscope.report.cost import BLOCK_SECONDS, Estimate, PassCost
from deepscope.report.sections import AuditContext, Html, Text
from deepscope.testing import make_fixture


def context_with(seconds, forward_seconds):
    context = AuditContext(problem=make_fixture("relu_mlp").problem(), budget="quick")
    context.cache["report.pass_cost"] = PassCost(seconds, forward_seconds, 10, 8)  # no timing: a fixed probe
    return context


def test_input_reason_names_dicts_and_token_ids_and_passes_floats():
    assert blocks_module.input_reason(torch.zeros(2, 3)) is None
    assert "integer token ids" in blocks_module.input_reason(torch.zeros(2, 3, dtype=torch.long))
    reason = blocks_module.input_reason({"input_ids": torch.zeros(2, 3), "attention_mask": torch.ones(2, 3)})
    assert "a dict of tensors (input_ids, attention_mask)" in reason


def test_not_applicable_and_decline_are_one_line_each():
    blocks, cost = [], {}
    blocks_module.not_applicable(blocks, cost, "Capacity bounds", "no ReLU.")
    assert [b.text for b in blocks] == ["Capacity bounds — not applicable: no ReLU."]
    assert cost == {"not_applicable": "no ReLU"}
    blocks, cost = [], {}
    blocks_module.decline(blocks, cost, Estimate("Layer health", passes=100, unit_seconds=1.0, budget_seconds=20))
    assert len(blocks) == 1 and blocks[0].text.startswith("Layer health declined: it would take about 100 s")
    assert cost["declined"] == "over budget" and cost["estimated_passes"] == 100.0


def test_isolated_turns_an_unfollowable_layer_into_one_line_and_other_errors_into_a_box():
    def unfollowable(blocks, results, sentences, cost):
        blocks.append(Text("half done"))
        sentences.append("never said")
        raise UnsupportedModelError("it cannot follow 'amax'.")

    part = blocks_module.isolated("Lipschitz bounds", unfollowable)
    assert [b.text for b in part.blocks] == ["Lipschitz bounds — not applicable: it cannot follow 'amax'."]
    assert part.sentence == "" and part.cost["not_applicable"] == "it cannot follow 'amax'"

    def broken(blocks, results, sentences, cost):
        raise RuntimeError("boom")

    part = blocks_module.isolated("Layer health", broken)
    assert isinstance(part.blocks[0], Html) and "Layer health failed" in part.blocks[0].html

    def fine(blocks, results, sentences, cost):
        blocks.append(Text("ok"))
        results["x"] = 1
        sentences += ["One.", "Two."]

    part = blocks_module.isolated("Fine", fine)
    assert part.results == {"x": 1} and part.sentence == "One. Two." and part.cost["block"] == "Fine"


def test_forward_ratio_and_the_kac_rice_sample_against_the_probe():
    context = context_with(0.01, 0.004)
    assert blocks_module.forward_ratio(context) == pytest.approx(0.4)
    # by time: half a block over 6 float64 passes at 0.4 * 0.01 s each -> 10 / 0.024 = 416, capped at n
    assert blocks_module.kac_rice_sample(context, {"n": 64}, units=10) == 64
    slow = context_with(1.0, 0.5)  # 0.5 * 20 s / (6 * 0.5 s) = 3.3 -> the minimum of 4
    assert blocks_module.kac_rice_sample(slow, {"n": 64}, units=10) == 4
    assert BLOCK_SECONDS["quick"] == 20.0  # the numbers above assume it
    # by memory: six float64 arrays of (examples, units) stay under 1 GB -> 1e9 // (units * 48)
    assert blocks_module.kac_rice_sample(context, {"n": 10**9}, units=10**6) == 20


def test_section_summary_says_why_when_nothing_applied():
    assert blocks_module.section_summary([]).startswith("No expressivity analysis applied")
    assert blocks_module.section_summary(["A.", "B."]) == "A. B."
