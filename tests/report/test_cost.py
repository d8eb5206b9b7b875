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
    assert cost.parameters == 5 * 7 + 7 + 7 * 3 + 3 and cost.examples == 8
    assert cost.call_seconds >= 0 and cost.forward_call_seconds >= 0
    assert cost.seconds > 0 and cost.forward_seconds > 0
    assert pass_cost(context) is cost  # cached: one measurement per audit
    assert all(bitwise_equal(before[name], value) for name, value in model.state_dict().items())
    assert torch.equal(model[0].weight.grad, torch.ones_like(model[0].weight))


def test_pass_cost_of_a_scripted_model_uses_its_own_weights_and_leaves_them_alone():
    # torch.func cannot substitute a ScriptModule's weights ("stateless API can't be used with Jitted
    # modules"): the timing differentiates the scripted model's own parameters with autograd.grad
    torch.manual_seed(0)
    scripted = torch.jit.script(nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3)))
    before = {name: value.clone() for name, value in scripted.state_dict().items()}
    cost = pass_cost(AuditContext(problem=Problem(scripted, (torch.randn(20, 5), torch.randint(0, 3, (20,))))))
    assert cost.parameters == 5 * 7 + 7 + 7 * 3 + 3 and cost.seconds > 0 and cost.forward_seconds > 0
    assert all(bitwise_equal(before[name], value) for name, value in scripted.state_dict().items())
    assert all(p.grad is None for p in scripted.parameters())


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


def test_calls_carry_their_fixed_cost():
    # 20 s budget; 0.01 s per example pass and 0.5 s per call: 10 calls leave 15 s = 1500 passes
    context = AuditContext(problem=None, budget="quick")
    context.cache["report.pass_cost"] = PassCost(0.01, 0.004, 10, 8, call_seconds=0.5, forward_call_seconds=0.2)
    assert fit_count(context, wanted=10_000, passes_per_unit=1, fixed_calls=10) == 1500
    # each unit: 1 pass + 1 call = 0.51 s -> 39 units in 20 s
    assert fit_count(context, wanted=10_000, passes_per_unit=1, calls_per_unit=1) == 39
    found = estimate(context, "NTK", passes=100, calls=20)
    assert found.seconds == pytest.approx(100 * 0.01 + 20 * 0.5) and found.to_dict()["estimated_calls"] == 20
    (text,) = declined(estimate(context, "NTK", passes=100, calls=40)).blocks
    assert "in 40 calls of 500 ms" in text.text


def test_pass_cost_splits_the_time_into_calls_and_examples(monkeypatch):
    # oracle: a fake clock where a forward pass costs 1 + 2n and a forward+backward 3 + 4n "seconds"
    # (so every repeat measures the same: the median of three is exact)
    import deepscope.report.cost as module

    class FakeProblem:
        model = nn.Linear(2, 2)

        def tensors(self, split, max_samples):
            return torch.zeros(max_samples, 2), torch.zeros(max_samples, dtype=torch.long)

        def parameters(self):
            return {"weight": self.model.weight.detach()}

    clock = {"now": 0.0, "pending": []}

    def loss(params, x, y):
        n = len(x)
        clock["now"] += (3 + 4 * n) if torch.is_grad_enabled() else (1 + 2 * n)
        return (params["weight"].sum() * 0).requires_grad_(torch.is_grad_enabled())

    FakeProblem.loss = staticmethod(loss)
    monkeypatch.setattr(module.time, "perf_counter", lambda: clock["now"])
    cost = pass_cost(AuditContext(problem=FakeProblem()))
    # forward + backward: 7 s for one example, 35 s for eight: 4 s per example, 3 s per call
    assert (cost.seconds, cost.call_seconds) == (4.0, 3.0)
    # forward passes are priced by the measured ratios: 17/35 of the batch, 3/7 of a single call
    assert cost.forward_seconds == pytest.approx(4.0 * 17 / 35)
    assert cost.forward_call_seconds == pytest.approx(3.0 * 3 / 7)
