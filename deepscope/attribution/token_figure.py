"""Token attributions as text: each token on a background whose colour is its score (inline HTML).

:func:`token_plot` draws the same as a matplotlib figure (notebooks, papers). The report is one
offline file, so its rendering (:func:`token_html`) is plain HTML with inline styles (no script, no
stylesheet, no font): red for tokens that push the explained class up, blue for those that push
it down, the opacity proportional to |score| / max |score| of the row. Every token's text is
escaped, and its exact score is in the ``title`` (shown on hover). Without a tokenizer the
tokens are shown as their ids; padding (attention mask 0) is left out.

Example:
    >>> html = token_html([("integrated gradients", ["[CLS]", "good", "film"], [0.0, 0.8, -0.2])])
    >>> "good" in html and "rgba(214, 39, 40, 1.000)" in html
    True
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import torch

from deepscope._inputs import is_mapping
from deepscope.errors import invalid_parameter

__all__ = ["token_html", "token_labels", "token_plot", "token_rows"]

_POSITIVE = (214, 39, 40)  # the report's red
_NEGATIVE = (31, 119, 180)  # the report's blue


def token_labels(ids: torch.Tensor, tokenizer: Any = None) -> list[str]:
    """The text of each id of one example: ``tokenizer.convert_ids_to_tokens`` when given, else the ids."""
    values = [int(i) for i in ids.reshape(-1).tolist()]
    if tokenizer is not None and hasattr(tokenizer, "convert_ids_to_tokens"):
        return [str(token) for token in tokenizer.convert_ids_to_tokens(values)]
    return [str(value) for value in values]


def token_rows(
    inputs: Any,
    scores: torch.Tensor,
    example: int,
    tokenizer: Any = None,
    input_key: str = "input_ids",
) -> tuple[list[str], list[float]]:
    """``(tokens, scores)`` of one example, without the padded positions (attention mask 0)."""
    ids = inputs[input_key] if is_mapping(inputs) else inputs
    if scores.dim() != 2 or scores.shape != ids.shape:
        raise invalid_parameter(
            "scores", "token_rows", f"per-token scores of shape {tuple(ids.shape)} (batch, tokens)", scores
        )
    keep = torch.ones(ids.shape[1], dtype=torch.bool)
    if is_mapping(inputs) and "attention_mask" in inputs:
        keep = inputs["attention_mask"][example].detach().cpu().bool()
    labels = token_labels(ids[example].detach().cpu()[keep], tokenizer)
    return labels, [float(v) for v in scores[example].detach().cpu()[keep].tolist()]


def _span(token: str, score: float, scale: float) -> str:
    red, green, blue = _POSITIVE if score >= 0 else _NEGATIVE
    alpha = min(abs(score) / scale, 1.0) if scale > 0 else 0.0
    ink = "#fff" if alpha > 0.6 else "#111"
    style = (
        f"background: rgba({red}, {green}, {blue}, {alpha:.3f}); color: {ink}; padding: 1px 3px; "
        "margin: 1px; border-radius: 3px; display: inline-block; font-family: monospace"
    )
    return f'<span style="{style}" title="{score:+.4g}">{html.escape(token)}</span>'


def token_html(rows: Sequence[tuple[str, Sequence[str], Sequence[float]]]) -> str:
    """One line per ``(label, tokens, scores)``: the label, then each token coloured by its score.

    Args:
        rows: for each line its label (e.g. the method and example), the token texts and one score
            per token; the colour scale is per line (max |score| of the line = full colour).

    Returns:
        An HTML fragment (a ``<div>``) with inline styles only.
    """
    lines = []
    for label, tokens, scores in rows:
        if len(tokens) != len(scores):
            raise invalid_parameter("rows", "token_html", "one score per token in each row", (len(tokens), len(scores)))
        scale = max((abs(s) for s in scores), default=0.0)
        spans = "".join(_span(str(t), float(s), scale) for t, s in zip(tokens, scores))
        lines.append(
            '<div style="margin: 4px 0; line-height: 1.9">'
            f'<span style="display: inline-block; min-width: 14em; font-size: 0.85em; color: #555">'
            f"{html.escape(label)}</span>{spans}</div>"
        )
    return '<div class="token-attributions">' + "".join(lines) + "</div>"


def token_plot(rows: Sequence[tuple[str, Sequence[str], Sequence[float]]], *, per_line: int = 12) -> Any:
    """The rows of :func:`token_html` as a ``matplotlib.figure.Figure``: each token a coloured box.

    Args:
        rows: ``(label, tokens, scores)`` per example or method (colour scale per row).
        per_line: tokens per line before a row wraps.

    Returns:
        A figure from :func:`deepscope._figures.new_figure` (never attached to a window).
    """
    from deepscope._figures import new_figure

    lines = sum(max(1, -(-len(tokens) // per_line)) + 1 for _, tokens, _ in rows)
    figure, ax = new_figure(1.0 + 0.75 * per_line, 0.3 * lines + 0.3)
    ax.set_axis_off()
    ax.set_xlim(0, per_line)
    ax.set_ylim(lines, 0)
    line = 0
    for label, tokens, scores in rows:
        if len(tokens) != len(scores):
            raise invalid_parameter("rows", "token_plot", "one score per token in each row", (len(tokens), len(scores)))
        ax.text(0, line + 0.5, label, fontsize=8, color="#555", va="center")
        line += 1
        scale = max((abs(s) for s in scores), default=0.0)
        for k, (token, score) in enumerate(zip(tokens, scores)):
            alpha = min(abs(score) / scale, 1.0) if scale > 0 else 0.0
            rgb = _POSITIVE if score >= 0 else _NEGATIVE
            colour = (rgb[0] / 255, rgb[1] / 255, rgb[2] / 255, alpha)
            ax.text(
                k % per_line + 0.05,
                line + k // per_line + 0.5,
                str(token),
                fontsize=8,
                family="monospace",
                va="center",
                color="white" if alpha > 0.6 else "#111",
                bbox={"facecolor": colour, "edgecolor": "none", "boxstyle": "round,pad=0.2"},
            )
        line += max(1, -(-len(tokens) // per_line))
    return figure
