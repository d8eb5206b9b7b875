"""Attribution logos: a sequence logo whose letter heights are attribution scores.

The attribution map of one-hot DNA is drawn as in DeepLIFT/TF-MoDISco figures (Shrikumar et al.
2017; tangermeme's ``plot_logo``, logomaker's ``Logo``): at position ``l`` each letter ``a`` is a
glyph of height ``h[a, l] = values[a, l] · x[a, l]`` (the attribution of the observed letter; pass
``inputs=None`` to draw hypothetical scores of every letter). Positive heights are stacked upwards
from 0, smallest nearest the axis; negative heights downwards, smallest magnitude nearest the axis.
Each glyph is the letter's outline (``matplotlib.textpath.TextPath``) scaled into its box
``[l − w/2, l + w/2] × [bottom, bottom + |h|]`` as a ``PathPatch``: the drawn area is the score.

The figure is a bare ``matplotlib.figure.Figure`` (:func:`deepscope._figures.new_figure`): no
pyplot, no backend change.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch

from deepscope.errors import invalid_parameter

__all__ = ["Glyph", "logo_glyphs", "draw_logo", "attribution_logo", "DNA_COLORS"]

DNA_COLORS: dict[str, str] = {"A": "#109648", "C": "#255C99", "G": "#F7B32B", "T": "#D62839"}
"""The usual nucleotide colours (A green, C blue, G orange, T red)."""

_OWNER = "attribution_logo"
_GLYPH_WIDTH = 0.9  # a glyph fills 90% of its position's width (a gap between columns)


@dataclasses.dataclass(frozen=True)
class Glyph:
    """One letter of the logo: drawn in the box ``[x − width/2, x + width/2] × [bottom, bottom + height]``."""

    letter: str
    x: float
    bottom: float
    height: float
    width: float = _GLYPH_WIDTH


def logo_glyphs(heights: torch.Tensor, alphabet: str = "ACGT", offset: int = 0) -> list[Glyph]:
    """The glyph boxes of a logo from per-letter heights ``(alphabet, length)`` (signed).

    At each position, positive heights are stacked upwards from 0 in increasing order and
    negative heights downwards in increasing magnitude; zero heights draw nothing. ``offset`` is
    the x of column 0. Glyph heights are magnitudes; ``bottom`` is the lower edge.
    """
    heights = _check_heights(heights, alphabet, "heights")
    glyphs: list[Glyph] = []
    for column in range(heights.shape[1]):
        values = [(float(heights[a, column]), alphabet[a]) for a in range(len(alphabet))]
        up, down = 0.0, 0.0
        for value, letter in sorted(v for v in values if v[0] > 0):
            glyphs.append(Glyph(letter, float(column + offset), up, value))
            up += value
        for value, letter in sorted((v for v in values if v[0] < 0), reverse=True):
            down += value
            glyphs.append(Glyph(letter, float(column + offset), down, -value))
    return glyphs


def draw_logo(
    ax: Any, heights: torch.Tensor, alphabet: str = "ACGT", colors: Mapping[str, str] | None = None, offset: int = 0
) -> list[Any]:
    """Draw the logo of ``heights (alphabet, length)`` on ``ax``; return the glyph patches in order."""
    from matplotlib.patches import PathPatch

    colors = dict(DNA_COLORS if colors is None else colors)
    glyphs = logo_glyphs(heights, alphabet, offset)
    outlines: dict[str, Any] = {}
    patches = []
    for glyph in glyphs:
        if glyph.letter not in outlines:
            outlines[glyph.letter] = _outline(glyph.letter)
        patch = PathPatch(
            _placed(outlines[glyph.letter], glyph), facecolor=colors.get(glyph.letter, "0.4"), edgecolor="none"
        )
        ax.add_patch(patch)
        patches.append(patch)
    length = heights.shape[1]
    top = max([g.bottom + g.height for g in glyphs], default=1.0)
    low = min([g.bottom for g in glyphs], default=0.0)
    pad = 0.05 * max(top - low, 1e-12)
    ax.set_xlim(offset - 0.5, offset + length - 0.5)
    ax.set_ylim(min(low, 0.0) - pad, max(top, 0.0) + pad)
    ax.axhline(0.0, color="0.6", linewidth=0.5)
    return patches


def attribution_logo(
    values: Any,
    inputs: torch.Tensor | None = None,
    *,
    example: int = 0,
    start: int = 0,
    end: int | None = None,
    alphabet: str = "ACGT",
    colors: Mapping[str, str] | None = None,
    ax: Any = None,
    title: str | None = None,
):  # -> matplotlib.figure.Figure
    """The sequence logo of one example's attribution.

    Args:
        values: an :class:`~deepscope.attribution.Attribution` (its first target when it has
            several) or a tensor ``(batch, alphabet, length)`` / ``(alphabet, length)``.
        inputs: the one-hot sequences (same shape): heights are ``values · inputs`` (the observed
            letters). None draws ``values`` as they are (hypothetical scores of every letter).
        example: which sequence of the batch.
        start, end: the positions to draw (``end=None``: to the end); the x axis shows positions.
        alphabet: one character per row of the values.
        colors: letter -> colour (default :data:`DNA_COLORS`).
        ax: a matplotlib Axes to draw on (a new figure when None).
        title: the axes title (default: the method and example).

    Returns:
        The ``matplotlib.figure.Figure``.

    Example:
        >>> x = torch.nn.functional.one_hot(torch.tensor([[0, 1, 3]]), 4).transpose(1, 2).float()
        >>> figure = attribution_logo(torch.ones(1, 4, 3), x)
        >>> len(figure.axes[0].patches)
        3
    """
    from deepscope._figures import new_figure

    method = getattr(values, "method", None)
    if method is not None:
        values = values.values[0] if values.multi_target else values.values
    if not isinstance(values, torch.Tensor):
        raise invalid_parameter("values", _OWNER, "an Attribution or a tensor (batch, alphabet, length)", values)
    values = values.detach().cpu().double()
    if values.dim() == 2:
        values = values.unsqueeze(0)
    if not isinstance(example, int) or isinstance(example, bool) or not 0 <= example < values.shape[0]:
        raise invalid_parameter("example", _OWNER, f"an int in [0, {values.shape[0]})", example)
    heights = _check_heights(values[example], alphabet, "values")
    if inputs is not None:
        if not isinstance(inputs, torch.Tensor) or tuple(inputs.shape[-2:]) != tuple(heights.shape):
            raise invalid_parameter(
                "inputs", _OWNER, f"one-hot sequences shaped like the values {tuple(values.shape)}", inputs
            )
        sequence = inputs.detach().cpu().double()
        heights = heights * (sequence[example] if sequence.dim() == 3 else sequence)
    length = heights.shape[1]
    last = length if end is None else end
    if (
        not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, last))
        or not 0 <= start < last <= length
    ):
        raise invalid_parameter("start/end", _OWNER, f"0 <= start < end <= {length}", (start, end))
    if ax is None:
        figure, ax = new_figure(max(3.0, min(0.18 * (last - start), 16.0)), 1.8)
    else:
        figure = ax.figure
    draw_logo(ax, heights[:, start:last], alphabet, colors, offset=start)
    ax.set_xlabel("position")
    ax.set_ylabel("attribution")
    ax.set_title(title if title is not None else f"{method or 'attribution'}, example {example}", fontsize=9)
    return figure


def _check_heights(heights: Any, alphabet: str, name: str) -> torch.Tensor:
    if not isinstance(alphabet, str) or not alphabet:
        raise invalid_parameter("alphabet", _OWNER, "a non-empty string, one character per row", alphabet)
    if not isinstance(heights, torch.Tensor) or heights.dim() != 2 or heights.shape[0] != len(alphabet):
        raise invalid_parameter(
            name, _OWNER, f"a tensor ({len(alphabet)}, length) for the alphabet {alphabet!r}", heights
        )
    if not bool(torch.isfinite(heights).all()):
        raise invalid_parameter(name, _OWNER, "finite values", heights)
    return heights.detach().cpu().double()


def _outline(letter: str) -> Any:
    """The letter's outline path and its bounding box (bold sans-serif)."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextPath

    path = TextPath((0.0, 0.0), letter, size=1.0, prop=FontProperties(family="DejaVu Sans", weight="bold"))
    return path, path.get_extents()


def _placed(outline: Any, glyph: Glyph) -> Any:
    """The outline scaled and moved into the glyph's box."""
    from matplotlib.transforms import Affine2D

    path, box = outline
    transform = (
        Affine2D()
        .translate(-box.x0, -box.y0)
        .scale(glyph.width / box.width, glyph.height / box.height)
        .translate(glyph.x - glyph.width / 2, glyph.bottom)
    )
    return transform.transform_path(path)
