"""Inline-SVG figure helpers: matplotlib figures become self-contained ``<svg>`` strings.

Glyphs are embedded as paths (``svg.fonttype = "path"``) so the report needs no fonts and makes
no network requests; ``svg.hashsalt`` is fixed so the same figure gives the same SVG text.
"""

from __future__ import annotations

import io
import re

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

__all__ = ["figure_to_svg", "new_figure"]

_HEADER = re.compile(r"^.*?(?=<svg)", re.DOTALL)


def new_figure(width: float = 6.0, height: float = 3.6, ncols: int = 1, nrows: int = 1):
    """A (figure, axes) pair sized for the report, not attached to any GUI window."""
    figure = Figure(figsize=(width, height), layout="constrained")
    axes = figure.subplots(nrows, ncols, squeeze=True)
    return figure, axes


def figure_to_svg(figure: Figure) -> str:
    """Render ``figure`` as an inline ``<svg>`` element (no XML prolog, no DOCTYPE) and close it."""
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "path", "svg.hashsalt": "deepscope"}):
        figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": "deepscope"})
    plt.close(figure)
    return _HEADER.sub("", buffer.getvalue(), count=1)
