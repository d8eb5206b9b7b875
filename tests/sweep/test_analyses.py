"""Sweep analyses: options checked against the registry, results flattened into named metrics."""

from __future__ import annotations

import math

from deepscope.sweep.analyses import check_analysis, flatten_result, run_analysis
from deepscope.testing import make_fixture


class _Table:
    def rows(self):
        return [
            {"name": "l2_norm", "value": 3.0, "standard_error": None},
            {"name": "sharpness", "value": 0.5, "standard_error": 0.1},
            {"name": "broken", "value": math.nan},
        ]


class _Result:
    def __init__(self, data):
        self._data = data

    def to_dict(self):
        return self._data


def test_a_table_gives_one_metric_per_finite_row():
    assert flatten_result("measures", _Table()) == {"measures.l2_norm": (3.0, None), "measures.sharpness": (0.5, 0.1)}


def test_fields_errors_and_nesting():
    data = {
        "trace": 12.0,
        "standard_error": 0.5,  # the first float field's error
        "samples": 30,
        "gap_standard_error": 0.2,
        "gap": 0.1,
        "converged": True,
        "note": "text",
        "inf": math.inf,
        "per_layer": {"a": 1.0, "b": {"c": 2}},
    }
    assert flatten_result("x", _Result(data)) == {
        "x.trace": (12.0, 0.5),
        "x.samples": (30.0, None),
        "x.gap": (0.1, 0.2),
        "x.converged": (1.0, None),
        "x.per_layer.a": (1.0, None),
        "x.per_layer.b.c": (2.0, None),
    }
    assert flatten_result("lipschitz", 2) == {"lipschitz": (2.0, None)}
    assert flatten_result("x", math.nan) == {} and flatten_result("x", [1, 2]) == {}


def test_check_analysis_reports_names_and_options_with_their_key_path():
    assert check_analysis("gap", {}) == []
    assert check_analysis("gap", {"k": 1}) == [(".options", "'gap' takes no options")]
    assert check_analysis(3, {})[0][0] == ".name"
    (path, message), *_ = check_analysis("astrology", {})
    assert path == ".name" and "unknown analysis 'astrology'" in message and "gap" in message
    assert check_analysis("hessian_trace", {"max_hvps": 8, "seed": 1}) == []
    (path, message), *_ = check_analysis("hessian_trace", {"samples": 8})
    assert path == ".options.samples" and message.startswith("not an option of hessian_trace (expected one of ")


def test_run_analysis_passes_what_each_kind_takes():
    fixture = make_fixture("mlp")
    problem = fixture.problem()
    assert run_analysis({"name": "gap"}, problem, fixture.inputs) == {}
    metrics = run_analysis({"name": "model_summary"}, problem, fixture.inputs)  # takes="model"
    assert metrics and all(name.startswith("model_summary.") for name in metrics)
