"""The attribution section's cost model: passes per method, saved-activation bytes, chunk size, fitting."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deepscope.attribution import _report_cost as cost_model
from deepscope.attribution._prepare import DEFAULT_MAX_BATCH
from deepscope.report.cost import PassCost
from deepscope.report.sections import AuditContext


def _context(unit_seconds: float, problem=None) -> AuditContext:
    context = AuditContext(problem=problem, budget="quick")  # 20 s per block
    context.cache["report.pass_cost"] = PassCost(unit_seconds, unit_seconds / 4, 10, 8)
    return context


def test_method_passes_count_steps_windows_and_forward_only_methods():
    x = torch.zeros(3, 2, 8, 8)
    assert cost_model.method_passes("saliency", x, {}) == 3
    assert cost_model.method_passes("integrated_gradients", x, {"steps": None, "max_steps": 64}) == 3 * 64
    assert cost_model.method_passes("integrated_gradients", x, {"steps": 16}) == 3 * 16
    assert cost_model.method_passes("deeplift", x, {}) == 6
    # 4 x 4 windows of 2 x 2 over 8 x 8, all channels, plus the unoccluded input; forward only (ratio 0.5)
    assert cost_model.method_passes("occlusion", x, {"window": (2, 2, 2)}, ratio=0.5) == 3 * 17 * 0.5
    assert cost_model.metric_passes(2, 1.0) == 2 * 2 * 11  # deletion + insertion, 11 points each


def test_randomisation_counts_one_map_per_parameterised_module_and_the_original():
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2))
    # 2 parameterised modules: 3 maps, each with a target forward per input and one re-initialised copy
    assert cost_model.randomisation_passes(model, 4) == 3 * (2 * 4 + 1)


def test_example_bytes_is_what_autograd_saves_and_leaves_the_model_alone():
    # oracle: Linear(5, 7) saves its input (5 floats) and ReLU its output (7 floats), which Linear(7, 2)
    # saves again (the same storage, counted once); the weights they save are not per example
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 2)).train()
    before = {name: value.clone() for name, value in model.state_dict().items()}
    saved = cost_model.example_bytes(model, torch.randn(4, 5))
    assert saved == 4 * (5 + 7)
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_max_batch_keeps_a_chunk_under_the_cap(monkeypatch):
    class Problem:
        model = nn.Linear(2, 2)

    monkeypatch.setattr(cost_model, "example_bytes", lambda model, inputs, output_fn=None: 10 * 2**20)
    context = _context(0.01, Problem())
    assert cost_model.max_batch(context, torch.zeros(1, 2)) == cost_model.CHUNK_BYTES // (10 * 2**20)
    monkeypatch.setattr(cost_model, "example_bytes", lambda model, inputs, output_fn=None: 4)
    assert cost_model.max_batch(context, torch.zeros(1, 2)) == 25  # cached: measured once per audit
    assert cost_model.max_batch(_context(0.01, Problem()), torch.zeros(1, 2)) == DEFAULT_MAX_BATCH


def test_axioms_shrink_inputs_first_then_steps():
    x = torch.zeros(3, 4)
    # 0.01 s per pass, 20 s: 2000 passes; 10 calls x (256 steps + 2 forwards) = 2580 per input: one input,
    # then (2000 - 20 forwards) / 10 calls = 198 steps
    assert cost_model.axiom_passes("integrated_gradients", x[:1], {"steps": 256}, 1.0) == 2580
    fit = cost_model.fitted_axioms
    count, options = fit(_context(0.01), "integrated_gradients", x, 3, {"steps": 256}, 1.0, chunk=10**9)
    assert (count, options) == (1, {"steps": 198})
    count, options = fit(_context(1e-4), "integrated_gradients", x, 3, {"steps": 256}, 1.0, chunk=10**9)
    assert (count, options) == (3, {"steps": 256})  # everything fits: unchanged
    count, options = fit(_context(1.0), "integrated_gradients", x, 3, {"steps": 256}, 1.0, chunk=10**9)
    assert (count, options) == (1, {"steps": 32})  # the floor; the section then declines on the estimate


def test_integrated_gradients_step_cap_fits_half_a_block():
    x = torch.zeros(4, 4)
    fitted = cost_model.fitted_options(_context(0.01), "integrated_gradients", x, {"max_steps": 256}, 10**9, 0.5)
    assert fitted == {"max_steps": 250}  # half of 20 s / 0.01 s = 1000 passes over 4 inputs
    assert cost_model.fitted_options(_context(0.01), "saliency", x, {}, 10**9, 0.5) == {}


def test_timed_records_seconds_next_to_the_estimate_even_on_error():
    costs: list = []
    found = cost_model.estimate_chunked(_context(0.01), "block", 100, chunk=30, share=1.0)
    assert found.to_dict()["estimated_calls"] == 4 and found.seconds == pytest.approx(1.0)
    assert cost_model.timed(costs, found, lambda a, b=0: a + b, 1, b=2) == 3
    with pytest.raises(ValueError):
        cost_model.timed(costs, found, lambda: int("x"))
    assert [c["block"] for c in costs] == ["block", "block"] and all(c["seconds"] >= 0 for c in costs)


def test_fitted_sequences_price_each_chunk_as_a_call():
    # oracle, by hand: 20 s block; per sequence 61 rows x 0.25 (forward ratio) x 0.01 s = 0.1525 s plus
    # 61/4 calls of 0.02 s = 0.305 s, and one call for the last partial chunk: (20 - 0.02) / 0.4575 = 43.67
    context = _context(0.01)
    context.cache["report.pass_cost"] = PassCost(0.01, 0.0025, 10, 8, call_seconds=0.02)
    assert cost_model.fitted_sequences(context, 100, 61 * 0.25, 61, chunk=4) == 43
    # without call overhead only the passes count: 20 / 0.1525 = 131.1, capped at the 100 wanted
    assert cost_model.fitted_sequences(_context(0.01), 100, 61 * 0.25, 61, chunk=4) == 100
    assert cost_model.fitted_sequences(context, 100, 1e6, 61, chunk=4) == 1  # at least one sequence
