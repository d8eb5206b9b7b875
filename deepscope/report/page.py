"""The report's page: blocks rendered as HTML inside one self-contained page (public API).

Every page deepscope writes (the audit's ``report.html``, the ``deepscope explain`` page, any page a
user builds from :class:`~deepscope.report.Text`, :class:`~deepscope.report.Table`,
:class:`~deepscope.report.Figure` and :class:`~deepscope.report.Html` blocks) shares this look and
these guarantees: inline CSS and inline SVG, no scripts and no external URLs (it opens offline and
makes no network requests), text escaped, and a ``generator: deepscope`` marker so a later run may
replace the file but never one the user wrote.

:func:`render_page` returns the page's text; write it together with any other files of the same run
through :class:`~deepscope.report.OutputUnit` (all files appear together or not at all).

Example:
    >>> from deepscope.report import Table, Text, render_page
    >>> page = render_page("My model", [Text("Two rows."), Table([{"a": 1}, {"a": 2}])], facts=[("Data", "digits")])
    >>> page.startswith("<!DOCTYPE html>") and "<h1>My model</h1>" in page
    True
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from typing import Any

from deepscope.errors import invalid_parameter
from deepscope.report._write import GENERATOR_META
from deepscope.report.sections import Figure, Html, Table, Text
from deepscope.results import format_value

__all__ = ["render_page", "render_block", "MAX_TABLE_ROWS"]

# Inline SVG in HTML needs neither matplotlib's RDF metadata nor namespace declarations (the HTML parser
# puts <svg> and xlink:href in their namespaces itself); dropping them leaves no URL at all in the page.
_SVG_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.DOTALL)
_SVG_NAMESPACES = re.compile(r'\s+xmlns(?::xlink)?="http://www\.w3\.org/(?:2000/svg|1999/xlink)"')
MAX_TABLE_ROWS = 200  # longer tables are cut in the page (results.json keeps everything)

CSS = """
:root { --ink: #1d2733; --muted: #5b6775; --line: #d9dee5; --accent: #2457a6; --bad: #b3261e; --bg: #ffffff; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
  background: var(--bg); }
main { max-width: 980px; margin: 0 auto; padding: 24px 20px 64px; }
header.report { border-bottom: 3px solid var(--accent); padding-bottom: 12px; margin-bottom: 16px; }
h1 { font-size: 26px; margin: 0 0 6px; } h2 { font-size: 21px; margin: 0 0 8px; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 8px 0; }
dl.facts dt { color: var(--muted); } dl.facts dd { margin: 0; }
.note { background: #fff7e0; border-left: 4px solid #e0a800; padding: 6px 10px; margin: 8px 0; }
nav.toc { background: #f4f6f9; border: 1px solid var(--line); border-radius: 6px; padding: 8px 16px; }
nav.toc ol { margin: 4px 0; padding-left: 20px; } nav.toc a { color: var(--accent); text-decoration: none; }
.badge { font-size: 12px; color: var(--muted); margin-left: 6px; } .badge.error { color: var(--bad); }
section.report-section { border-top: 1px solid var(--line); margin-top: 24px; padding-top: 16px; }
p.summary { font-size: 16px; font-weight: 600; margin: 4px 0 12px; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 13px; display: block; overflow-x: auto; }
caption { text-align: left; color: var(--muted); padding-bottom: 4px; }
th, td { border: 1px solid var(--line); padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f4f6f9; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 8px 0 16px; } figure svg { max-width: 100%; height: auto; }
figcaption { color: var(--muted); font-size: 13px; }
.error-box { border: 1px solid var(--bad); background: #fdf0ef; border-radius: 6px; padding: 8px 12px; }
.error-box strong { color: var(--bad); } pre { white-space: pre-wrap; font-size: 12px; overflow-x: auto; }
footer.timing { color: var(--muted); font-size: 12px; margin-top: 8px; }
"""


def escape(value: Any) -> str:
    """``str(value)`` with ``& < > " '`` escaped for HTML text and attribute values."""
    return html.escape(str(value), quote=True)


def render_block(block: Any) -> str:
    """One report block as HTML.

    A :class:`Text` is escaped, a :class:`Table` becomes a ``<table>`` (at most
    :data:`MAX_TABLE_ROWS` rows), a :class:`Figure` must hold an inline ``<svg>`` string (see
    :func:`deepscope.report.figure_to_svg`) and an :class:`Html` block is inserted as it is.

    Raises:
        TypeError: an unknown block, or a Figure whose ``svg`` is not an ``<svg>`` element. (The
            audit turns it into the failing section's error box.)
    """
    if isinstance(block, Text):
        return f"<p>{escape(block.text)}</p>"
    if isinstance(block, Table):
        return _render_table(block)
    if isinstance(block, Figure):
        svg = str(block.svg)
        if not svg.lstrip().startswith("<svg"):
            raise TypeError("a Figure block must hold an inline <svg> string (use deepscope.report.figure_to_svg)")
        svg = _SVG_NAMESPACES.sub("", _SVG_METADATA.sub("", svg, count=1), count=2)
        caption = f"<figcaption>{escape(block.caption)}</figcaption>" if block.caption else ""
        return f"<figure>{svg}{caption}</figure>"
    if isinstance(block, Html):
        return str(block.html)
    raise TypeError(f"unknown report block {type(block).__name__}; use Text, Table, Figure or Html")


def _render_table(table: Table) -> str:
    rows = list(table.rows)
    columns = list(table.columns) if table.columns else []
    if not table.columns:
        for row in rows:
            columns.extend(key for key in row if key not in columns)
    caption = f"<caption>{escape(table.caption)}</caption>" if table.caption else ""
    head = "".join(f"<th>{escape(column)}</th>" for column in columns)
    body = []
    for row in rows[:MAX_TABLE_ROWS]:
        cells = []
        for column in columns:
            value = row.get(column)
            numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
            cells.append(f"<td{' class=num' if numeric else ''}>{escape(format_value(value))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    more = len(rows) - MAX_TABLE_ROWS
    if more > 0:
        body.append(f'<tr><td colspan="{len(columns)}">... {more} more rows in results.json</td></tr>')
    return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def page_html(title: str, facts: Iterable[tuple[str, Any]], notes: Iterable[str], body: str) -> str:
    """The page around an already rendered ``body`` (shared by :func:`render_page` and the audit).

    Facts with an empty value are left out; ``title``, fact names and values and notes are escaped,
    ``body`` is inserted as it is.
    """
    fact_html = "".join(f"<dt>{escape(name)}</dt><dd>{escape(value)}</dd>" for name, value in facts if value)
    note_html = "".join(f'<p class="note">{escape(note)}</p>' for note in notes)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f"{GENERATOR_META}"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>{escape(title)}</title>"
        f"<style>{CSS}</style></head>\n<body><main>"
        f'<header class="report"><h1>{escape(title)}</h1>'
        f'<dl class="facts">{fact_html}</dl>{note_html}</header>'
        f"{body}"
        "</main></body></html>\n"
    )


def render_page(
    title: str,
    blocks: Sequence[Any],
    *,
    facts: Sequence[tuple[str, Any]] = (),
    notes: Sequence[str] = (),
) -> str:
    """A complete, self-contained HTML page: a header (title, facts, notes) and the blocks in order.

    Args:
        title: the page title (``<title>`` and the ``<h1>``).
        blocks: :class:`Text`, :class:`Table`, :class:`Figure` or :class:`Html` blocks, rendered as
            in the audit report.
        facts: ``(name, value)`` pairs shown as a definition list under the title; pairs with an
            empty value are left out.
        notes: highlighted one-paragraph notes under the facts.

    Returns:
        The page's text (UTF-8 when written), marked ``generator: deepscope``.

    Raises:
        InvalidParameterError: ``title`` is not a string, ``blocks`` is not a list of blocks,
            ``facts`` is not a list of pairs, or ``notes`` is not a list of strings.
    """
    if not isinstance(title, str):
        raise invalid_parameter("title", "render_page", "a string", title)
    if isinstance(blocks, (str, bytes)) or not isinstance(blocks, Sequence):
        raise invalid_parameter("blocks", "render_page", "a list of Text, Table, Figure or Html blocks", blocks)
    unknown = [block for block in blocks if not isinstance(block, (Text, Table, Figure, Html))]
    if unknown:
        raise invalid_parameter("blocks", "render_page", "a list of Text, Table, Figure or Html blocks", unknown)
    if isinstance(facts, (str, bytes)) or not isinstance(facts, Sequence):
        raise invalid_parameter("facts", "render_page", "a list of (name, value) pairs", facts)
    if not all(isinstance(fact, tuple) and len(fact) == 2 for fact in facts):
        raise invalid_parameter("facts", "render_page", "a list of (name, value) pairs", list(facts))
    if isinstance(notes, (str, bytes)) or not isinstance(notes, Sequence) or not all(isinstance(n, str) for n in notes):
        raise invalid_parameter("notes", "render_page", "a list of strings", notes)
    return page_html(title, facts, notes, "".join(render_block(block) for block in blocks))
