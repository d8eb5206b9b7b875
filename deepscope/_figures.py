"""Figure construction below the results: bare ``matplotlib.figure.Figure`` objects.

Every ``Result.plot`` builds its figure here. The module sits below every family and below the
report (``report/svg.py`` only *exports* figures), and it never touches matplotlib's global state:
no ``pyplot``, no ``matplotlib.use``. A figure made here is not registered with any GUI backend,
so drawing one in a notebook leaves the user's backend and open windows as they were.

matplotlib itself is imported only when a figure is drawn, so ``import deepscope`` does not pay
for it (nor select a backend as a side effect).

Example:
    >>> figure, axes = new_figure(4.0, 3.0)
    >>> _ = axes.plot([0, 1], [1, 0])
    >>> type(figure).__name__
    'Figure'
"""

from __future__ import annotations

from typing import Any

__all__ = ["new_figure"]


def new_figure(width: float = 6.0, height: float = 3.6, ncols: int = 1, nrows: int = 1) -> tuple[Any, Any]:
    """A ``(figure, axes)`` pair sized for the report, not attached to any GUI window.

    Args:
        width, height: the figure size in inches.
        ncols, nrows: the grid of axes; one axes object when both are 1, else an array of them
            (``squeeze=True``, as ``pyplot.subplots`` returns).

    Returns:
        ``(matplotlib.figure.Figure, axes)`` with a constrained layout.
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    axes = figure.subplots(nrows, ncols, squeeze=True)
    return figure, axes
