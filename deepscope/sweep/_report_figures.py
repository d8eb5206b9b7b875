"""The figures of the sweep report, as inline SVG: distributions, the ranking with its intervals, scatters.

Every figure is a :class:`matplotlib.figure.Figure` built directly (no pyplot, no change to the
global backend) and exported by :func:`deepscope.report.svg.figure_to_svg` (glyphs as paths, a fixed
hash salt, so the same data give the same SVG text). :func:`inline_svg` then drops what an HTML
page does not need — the RDF metadata and the namespace declarations, the only URLs matplotlib
writes — so the page holds no ``http(s)://`` address at all.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["inline_svg", "histograms_svg", "ranking_svg", "scatter_svg"]

_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.DOTALL)
_NAMESPACES = re.compile(r'\s+xmlns(?::xlink)?="http://www\.w3\.org/(?:2000/svg|1999/xlink)"')
_COLUMNS = 4
_TAU, _PSI = "#2457a6", "#c26a00"


def inline_svg(figure: Any) -> str:
    """``figure`` as an ``<svg>`` element for an HTML page: no XML prolog, no metadata, no URL."""
    from deepscope.report.svg import figure_to_svg

    svg = figure_to_svg(figure)
    return _NAMESPACES.sub("", _METADATA.sub("", svg, count=1), count=2)


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _grid(count: int, panel_height: float = 1.9):
    """A figure with ``count`` small panels, four per row; unused panels are hidden."""
    rows = max(1, math.ceil(count / _COLUMNS))
    figure = _figure(10.0, panel_height * rows)
    axes = np.atleast_1d(figure.subplots(rows, _COLUMNS, squeeze=False)).ravel()
    for axis in axes[count:]:
        axis.set_visible(False)
    return figure, axes[:count]


def _short(name: str) -> str:
    return name.removeprefix("measures.")


def histograms_svg(columns: Mapping[str, Sequence[float]]) -> str:
    """Small-multiple histograms, one panel per metric (name -> values; NaN values are left out)."""
    figure, axes = _grid(len(columns))
    for axis, (name, values) in zip(axes, columns.items()):
        data = np.asarray(values, dtype=np.float64)
        data = data[np.isfinite(data)]
        if data.size:
            axis.hist(data, bins=min(20, max(5, int(math.sqrt(data.size)) + 1)), color=_TAU, alpha=0.85)
        else:
            axis.text(0.5, 0.5, "no finite values", ha="center", va="center", transform=axis.transAxes)
        axis.set_title(f"{_short(name)} (n={data.size})", fontsize=8)
        axis.tick_params(labelsize=7)
    return inline_svg(figure)


def ranking_svg(rows: Sequence[Mapping[str, Any]]) -> str:
    """τ and Ψ of every measure with their bootstrap intervals (a forest plot), top row first."""
    rows = [r for r in rows if math.isfinite(r["kendall_tau"])]
    figure = _figure(8.0, 1.2 + 0.24 * max(len(rows), 1))
    axis = figure.subplots()
    positions = np.arange(len(rows))[::-1]
    for offset, key, colour, label in ((0.15, "kendall_tau", _TAU, "Kendall τ"), (-0.15, "psi", _PSI, "Ψ")):
        centre = np.array([r[key] for r in rows], dtype=np.float64)
        low = np.array([r.get(f"{key}_low", math.nan) for r in rows], dtype=np.float64)
        high = np.array([r.get(f"{key}_high", math.nan) for r in rows], dtype=np.float64)
        spread = np.vstack([np.nan_to_num(centre - low), np.nan_to_num(high - centre)]).clip(min=0)
        axis.errorbar(centre, positions + offset, xerr=spread, fmt="o", ms=3.5, color=colour, label=label, lw=1)
    axis.axvline(0.0, color="#888888", lw=0.8)
    axis.set_yticks(positions, [r["measure"] for r in rows], fontsize=7)
    axis.set_xlim(-1.05, 1.05)
    axis.set_xlabel("rank correlation with the generalization gap (bars: 90% bootstrap interval)", fontsize=8)
    axis.tick_params(axis="x", labelsize=7)
    if rows:
        axis.legend(fontsize=7, loc="lower right")
    return inline_svg(figure)


def scatter_svg(
    panels: Sequence[tuple[str, Sequence[float], float]], gap: Sequence[float], colour_by: tuple[str, Sequence] | None
) -> str:
    """Measure-vs-gap scatter plots: ``(measure name, values, τ)`` per panel, coloured by a hyperparameter."""
    figure, axes = _grid(len(panels), panel_height=2.3)
    gaps = np.asarray(gap, dtype=np.float64)
    palette = ("#2457a6", "#c26a00", "#2e8b57", "#b3261e", "#7b4fa0", "#5b6775", "#d4a017", "#1f9eb3")
    colours, legend = [_TAU] * len(gaps), {}
    if colour_by is not None:
        levels = sorted({str(v) for v in colour_by[1]})
        legend = {level: palette[i % len(palette)] for i, level in enumerate(levels)}
        colours = [legend[str(v)] for v in colour_by[1]]
    for axis, (name, values, tau) in zip(axes, panels):
        x = np.asarray(values, dtype=np.float64)
        keep = np.isfinite(x) & np.isfinite(gaps)
        axis.scatter(x[keep], gaps[keep], s=9, c=[c for c, k in zip(colours, keep) if k], alpha=0.8, lw=0)
        axis.set_title(f"{name} (τ = {tau:.2f})" if math.isfinite(tau) else name, fontsize=8)
        axis.set_xlabel(name, fontsize=7)
        axis.set_ylabel("gap", fontsize=7)
        axis.tick_params(labelsize=7)
    if colour_by is not None and panels and len(legend) <= len(palette):
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], ls="", marker="o", ms=4, color=c, label=level) for level, c in legend.items()]
        axes[0].legend(handles=handles, title=colour_by[0], fontsize=6, title_fontsize=6, loc="best")
    return inline_svg(figure)
