"""Figures below the results: bare Figure objects, no pyplot, no backend change."""

from __future__ import annotations

import subprocess
import sys

from deepscope._figures import new_figure


def test_a_figure_of_the_asked_size_and_grid():
    figure, axes = new_figure(4.0, 2.0)
    assert type(figure).__name__ == "Figure" and tuple(figure.get_size_inches()) == (4.0, 2.0)
    assert hasattr(axes, "plot")  # one axes object when the grid is 1 x 1
    _, grid = new_figure(ncols=3, nrows=2)
    assert grid.shape == (2, 3)
    assert figure.canvas.manager is None  # not attached to any GUI window


def test_drawing_a_figure_leaves_the_backend_and_pyplot_alone():
    # asking matplotlib for its backend would itself import pyplot, so the check is that neither
    # pyplot nor a backend module was imported, in a fresh process
    code = (
        "import sys, matplotlib;"
        "from deepscope._figures import new_figure; new_figure()[1].plot([0, 1]);"
        "print('matplotlib.pyplot' in sys.modules, any(m.startswith('matplotlib.backends.backend_') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
