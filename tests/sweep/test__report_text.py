"""The sweep report's text: the spec as TOML that reads back to the same spec, and the page shell."""

from __future__ import annotations

import tomllib

from deepscope.sweep._report_text import format_spec, page
from deepscope.sweep.spec import parse_spec
from tests.sweep.conftest import tiny_spec


def _without_none(value):
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value]
    return value


def test_the_spec_reads_back_as_the_same_spec():
    spec = parse_spec(tiny_spec(**{"search.grid": {"model.width": [4, 8], "train.lr": [0.1, 0.01]}}))
    text = format_spec(spec)
    assert "[search.grid]" in text and "[[analyses]]" in text
    assert '"model.width" = [4, 8]' in text  # dotted keys are quoted
    assert "# n_samples: not set" in text  # None, which TOML cannot spell, becomes a comment
    assert tomllib.loads(text) == _without_none(spec)


def test_an_empty_store_and_odd_values():
    assert format_spec({}) == "# the store holds no spec yet"
    text = format_spec({"name": 'a "quoted" name', "flag": True, "ratio": 0.5, "table": {"x": None}})
    assert tomllib.loads(text) == {"name": 'a "quoted" name', "flag": True, "ratio": 0.5, "table": {}}


def test_the_page_escapes_facts_and_titles_but_not_section_html():
    header = {"name": "<w>", "description": "d & e", "store": "", "deepscope_version": "0.1", "created": "now"}
    html = page(header, [("rank", "Rank & file", "<b>bold</b>", "<p>body</p>")])
    assert html.startswith("<!DOCTYPE html>") and "<title>deepscope sweep report: &lt;w&gt;</title>" in html
    assert "<dd>d &amp; e</dd>" in html and "<dt>Store</dt>" not in html  # empty facts are left out
    assert '<a href="#section-rank">Rank &amp; file</a>' in html and "<b>bold</b>" in html and "<p>body</p>" in html
    assert "<dt>Experiment</dt>" in page(header, [], kind="experiment")
    assert "http" not in html.replace('name="viewport"', "")
