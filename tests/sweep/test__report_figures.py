"""The sweep report's figures: inline SVG without metadata or namespace URLs, one panel per metric."""

from __future__ import annotations

import math

from deepscope.sweep._report_figures import histograms_svg, ranking_svg, scatter_svg


def _panels(svg: str) -> int:
    return svg.count('<g id="axes_')


def test_histograms_one_panel_per_metric_and_nan_left_out():
    svg = histograms_svg({"measures.a": [1.0, 2.0, 2.5, math.nan], "b": [math.nan], "c": [0.0] * 5})
    assert svg.startswith("<svg") and "<metadata>" not in svg and "http://www.w3.org/2000/svg" not in svg
    assert _panels(svg) == 3
    assert "<!-- a (n=3) -->" in svg and "<!-- b (n=0) -->" in svg  # prefix stripped, NaN left out of n
    assert histograms_svg({"a": [1.0, 2.0]}) == histograms_svg({"a": [1.0, 2.0]})  # deterministic


def test_ranking_and_scatter():
    rows = [
        {"measure": "m1", "kendall_tau": 0.4, "kendall_tau_low": 0.2, "kendall_tau_high": 0.6, "psi": 0.3},
        {"measure": "m2", "kendall_tau": math.nan, "psi": math.nan},  # undefined: left out
    ]
    assert ranking_svg(rows).startswith("<svg") and ranking_svg([]).startswith("<svg")
    scatter = scatter_svg(
        [("m1", [1.0, 2.0, math.nan], 0.5), ("m2", [3.0, 1.0, 2.0], math.nan)], [0.1, 0.2, 0.3], ("width", [4, 8, 4])
    )
    assert _panels(scatter) >= 2 and "<metadata>" not in scatter
