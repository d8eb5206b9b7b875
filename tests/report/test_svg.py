"""SVG export: self-contained, deterministic, and the figure is closed."""

from __future__ import annotations

import sys

from deepscope._figures import new_figure
from deepscope.report.svg import figure_to_svg


def _figure():
    figure, axes = new_figure(3.0, 2.0)
    axes.plot([0, 1, 2], [2, 0, 1], label="a curve")
    axes.set_title("Title with glyphs")
    return figure


def test_an_inline_svg_element_with_no_prolog_and_no_fonts():
    svg = figure_to_svg(_figure())
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    assert "<?xml" not in svg and "<!DOCTYPE" not in svg
    assert "font-family" not in svg and "<text" not in svg  # glyphs are paths: no fonts needed
    assert 'href="http' not in svg and "@import" not in svg and "url(http" not in svg  # nothing fetched


def test_the_same_figure_gives_the_same_text():
    assert figure_to_svg(_figure()) == figure_to_svg(_figure())


def test_a_pyplot_figure_is_closed_after_export():
    import matplotlib

    matplotlib.use("Agg")  # this test process only: pyplot needs a backend to manage figures
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots()
    axes.plot([0, 1])
    number = figure.number
    figure_to_svg(figure)
    assert number not in plt.get_fignums()
    assert "matplotlib.pyplot" in sys.modules
