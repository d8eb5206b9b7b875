"""SVG export for the report: a matplotlib figure becomes a self-contained ``<svg>`` string.

Glyphs are embedded as paths (``svg.fonttype = "path"``) so the report needs no fonts and makes
no network requests; ``svg.hashsalt`` is fixed so the same figure gives the same SVG text.

Figures are *built* below the results, in :mod:`deepscope._figures`; this module only exports
them. Neither touches matplotlib's global backend (no ``matplotlib.use``, no ``pyplot`` import),
and matplotlib is imported only when a figure is exported.
"""

from __future__ import annotations

import io
import re
import sys
from typing import Any

# Kept here for callers that import it from the report (one release; new code uses deepscope._figures).
from deepscope._figures import new_figure

__all__ = ["figure_to_svg", "new_figure"]

_HEADER = re.compile(r"^.*?(?=<svg)", re.DOTALL)


def figure_to_svg(figure: Any) -> str:
    """Render ``figure`` as an inline ``<svg>`` element (no XML prolog, no DOCTYPE) and close it.

    ``figure`` is a ``matplotlib.figure.Figure``. Saving as SVG uses matplotlib's SVG canvas
    directly, whatever backend is selected. A figure that pyplot manages (one the caller made with
    ``plt.subplots`` and passed in through ``ax=``) is closed in pyplot too, so it does not linger
    as an open window; pyplot is never imported for that.
    """
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "path", "svg.hashsalt": "deepscope"}):
        figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": "deepscope"})
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close(figure)
    return _HEADER.sub("", buffer.getvalue(), count=1)
