"""render_page: the public page API shared by the audit report and ``deepscope explain``."""

from __future__ import annotations

import pytest

from deepscope.errors import InvalidParameterError
from deepscope.report import Figure, Html, Table, Text, figure_to_svg, new_figure, render_page
from deepscope.report._write import GENERATOR_META
from deepscope.report.page import MAX_TABLE_ROWS, render_block


def test_page_holds_title_facts_notes_and_blocks_in_order():
    figure, axes = new_figure(3, 2)
    axes.plot([0, 1], [0, 1])
    blocks = [Text("first <b>"), Table([{"a": 1.5, "b": "x"}], caption="cap"), Figure(figure_to_svg(figure), "fig")]
    page = render_page("Title & co", blocks, facts=[("Data", "digits"), ("Empty", "")], notes=["careful <now>"])
    assert page.startswith("<!DOCTYPE html>\n") and page.endswith("</main></body></html>\n")
    assert GENERATOR_META in page
    assert "<title>Title &amp; co</title>" in page and "<h1>Title &amp; co</h1>" in page
    assert "<dt>Data</dt><dd>digits</dd>" in page and "Empty" not in page  # empty facts are left out
    assert '<p class="note">careful &lt;now&gt;</p>' in page
    first, table, svg = (
        page.index("<p>first &lt;b&gt;</p>"),
        page.index("<table><caption>cap"),
        page.index("<figure><svg"),
    )
    assert first < table < svg
    assert "<script" not in page and "http://" not in page and "https://" not in page  # self-contained


def test_blocks_render_as_in_the_audit_report():
    rows = [{"i": i} for i in range(MAX_TABLE_ROWS + 3)]
    assert "... 3 more rows in results.json" in render_block(Table(rows))
    assert render_block(Html("<p>raw</p>")) == "<p>raw</p>"
    page = render_page("t", [Text("a"), Html("<i>b</i>")])
    assert "<p>a</p><i>b</i></main>" in page


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        ((42, []), "'title' parameter of render_page must be a string"),
        (("t", "text"), "'blocks' parameter of render_page must be a list of Text, Table, Figure or Html blocks"),
        (("t", ["not a block"]), "'blocks' parameter of render_page"),
        (("t", [], {"facts": [("only name",)]}), "'facts' parameter of render_page must be a list of (name, value)"),
        (("t", [], {"facts": "Data"}), "'facts' parameter of render_page"),
        (("t", [], {"notes": "one note"}), "'notes' parameter of render_page must be a list of strings"),
        (("t", [], {"notes": [3]}), "'notes' parameter of render_page"),
    ],
)
def test_bad_arguments_are_refused(arguments, fragment):
    *positional, keywords = arguments if isinstance(arguments[-1], dict) else (*arguments, {})
    with pytest.raises(InvalidParameterError) as error:
        render_page(*positional, **keywords)
    assert fragment in str(error.value) and "Got " in str(error.value)
