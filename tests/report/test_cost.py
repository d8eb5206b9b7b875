"""Cost bounds: the measured pass cost, estimates, fitting a sample to the budget, declining."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deepscope.guard import bitwise_equal
from deepscope.problem import Problem
from deepscope.report.cost import (
    BLOCK_SECONDS,
    Estimate,
    PassCost,
    block_seconds,
    declined,
    estimate,
    fit_count,
    pass_cost,
)
from deepscope.report.sections import AuditContext, Text


def _context(unit_seconds: float, budget: str = "quick") -> AuditContext:
    context = AuditContext(problem=None, budget=budget)
    context.cache["report.pass_cost"] = PassCost(
        seconds=unit_seconds, forward_seconds=unit_seconds / 3, parameters=10, examples=4
    )
    return context


def test_pass_cost_is_measured_once_and_leaves_the_model_alone():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3))
    model[0].weight.grad = torch.ones_like(model[0].weight)
    before = {name: value.clone() for name, value in model.state_dict().items()}
    problem = Problem(model, (torch.randn(20, 5), torch.randint(0, 3, (20,))))
    context = AuditContext(problem=problem)
    cost = pass_cost(context)
    assert cost.parameters == 5 * 7 + 7 + 7 * 3 + 3 and cost.examples == 4
    assert cost.seconds > 0 and cost.forward_seconds > 0
    assert pass_cost(context) is cost  # cached: one measurement per audit
    assert all(bitwise_equal(before[name], value) for name, value in model.state_dict().items())
    assert torch.equal(model[0].weight.grad, torch.ones_like(model[0].weight))


def test_estimate_is_passes_times_the_unit_against_the_block_budget():
    context = _context(0.01)
    found = estimate(context, "Hessian", passes=1500)
    assert found.seconds == pytest.approx(15.0) and found.budget_seconds == BLOCK_SECONDS["quick"]
    assert found.fits
    assert not estimate(context, "Hessian", passes=2500).fits  # 25 s > 20 s
    assert block_seconds(_context(0.01, "full")) == BLOCK_SECONDS["full"]


def test_fit_count_is_the_largest_count_within_the_budget():
    context = _context(0.01)  # 20 s budget / 0.01 s = 2000 passes
    assert fit_count(context, wanted=100, passes_per_unit=5) == 100  # 500 passes fit
    assert fit_count(context, wanted=1000, passes_per_unit=5) == 400  # 2000 / 5
    assert fit_count(context, wanted=1000, passes_per_unit=5, fixed_passes=1000) == 200  # (2000 - 1000) / 5
    assert fit_count(context, wanted=1000, passes_per_unit=5, fixed_passes=5000, minimum=2) == 2


def test_declined_says_in_one_line_what_it_would_cost():
    part = declined(Estimate("Line partition", passes=3e6, unit_seconds=0.02, budget_seconds=20.0), "regions grow")
    (text,) = part.blocks
    assert isinstance(text, Text) and "\n" not in text.text
    assert text.text.startswith("Line partition declined: it would take about 6e+04 s")
    assert text.text.endswith("regions grow")
    assert part.cost["declined"] == "regions grow" and part.error is None
