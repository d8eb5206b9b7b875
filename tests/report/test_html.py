"""Tests for the report writer: failing sections, self-containment, strict JSON, overwrite policy."""

import json
import re

import pytest
import torch

from deepscope import DeepscopeError, InvalidParameterError, Problem
from deepscope.report import SECTIONS, AuditContext, Figure, Html, Section, Table, Text, figure_to_svg, new_figure
from deepscope.report.html import GENERATOR_META, MAX_TABLE_ROWS, ReportPaths, write_report


def _figure_section(context):
    figure, axes = new_figure(4, 3)
    axes.plot([0, 1, 2], [1.0, 0.5, 0.25], marker="o")
    axes.set_title("loss <curve>")
    return Section(
        summary="A figure, a table with <b>markup</b> & a NaN.",
        blocks=[
            Text("Plain text with <script>alert(1)</script>."),
            Table([{"name": "<i>a</i>", "value": float("nan")}, {"name": "b", "value": 2.5}], caption="tbl"),
            Figure(figure_to_svg(figure), caption="cap <x>"),
            Html('<p class="trusted">trusted</p>'),
        ],
        results={"value": float("nan"), "tensor": torch.tensor([1.0, float("inf")]), "n": 3},
    )


def _failing_section(context):
    raise ValueError("boom <here>")


def _bad_return_section(context):
    return {"not": "a Section"}


def _long_table_section(context):
    return Section(summary="Long.", blocks=[Table([{"i": i} for i in range(MAX_TABLE_ROWS + 5)])])


def _seed_section(context):
    return Section(summary="Seeded.", results={"draw": float(torch.rand(()))})


def _costed_section(context):
    from deepscope.report.sections import Part, run_block

    parts = [
        run_block("Cheap <block>", lambda: Part([Text("ran")], cost={"passes": 12})),
        run_block(
            "Dear block",
            lambda: Part([Text("no")], cost={"declined": "too dear", "estimated_seconds": 900.0}),
        ),
    ]
    return Section.from_parts(parts, summary=lambda _: "Costed.")


_TEMPORARY = {
    "zz_figure": ("Figure section", 1001, _figure_section),
    "zz_failing": ("Failing section", 1002, _failing_section),
    "zz_bad_return": ("Bad return", 1003, _bad_return_section),
    "zz_long_table": ("Long table", 1004, _long_table_section),
    "zz_seed": ("Seed section", 1005, _seed_section),
    "zz_costed": ("Costed section", 1006, _costed_section),
}


@pytest.fixture
def temporary_sections():
    """Register the test sections; remove them from SECTIONS afterwards."""
    from deepscope.report import register_section

    for key, (title, order, builder) in _TEMPORARY.items():
        register_section(key, title=title, order=order)(builder)
    yield list(_TEMPORARY)
    for key in _TEMPORARY:
        SECTIONS.pop(key, None)


@pytest.fixture
def context():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Dropout(0.1), torch.nn.Linear(8, 3))
    train = (torch.randn(24, 4), torch.randint(0, 3, (24,)))
    test = (torch.randn(12, 4), torch.randint(0, 3, (12,)))
    return AuditContext(problem=Problem(model, train, test), model_name="tiny <mlp>", seed=3)


def test_failing_section_is_rendered_and_the_rest_is_written(context, temporary_sections, tmp_path):
    paths = write_report(context, tmp_path / "out", sections=temporary_sections)
    assert isinstance(paths, ReportPaths)
    page = paths.html.read_text()
    results = json.loads(paths.json.read_text())
    sections = results["sections"]
    assert sections["zz_failing"]["status"] == "error"
    assert sections["zz_failing"]["error"] == "ValueError: boom <here>"
    assert "Traceback" in sections["zz_failing"]["traceback"]
    assert sections["zz_bad_return"]["status"] == "error"
    assert sections["zz_bad_return"]["error_type"] == "TypeError"
    assert sections["zz_figure"]["status"] == "ok"
    assert sections["zz_figure"]["results"]["n"] == 3
    assert sections["zz_long_table"]["status"] == "ok"
    # The error is shown with its type, escaped message and a collapsed traceback.
    failing = re.search(r'<section class="report-section" id="section-zz_failing".*?</section>', page, re.S).group(0)
    assert "<strong>ValueError</strong>: boom &lt;here&gt;" in failing
    assert "<details><summary>Traceback</summary>" in failing
    # The other sections are all there, in registry order, each with its summary first.
    positions = [page.index(f'id="section-{key}"') for key in temporary_sections]
    assert positions == sorted(positions)
    assert re.search(r'id="section-zz_figure"[^>]*><h2>Figure section</h2><p class="summary">A figure', page)
    assert page.count("<svg") == 1
    assert "... 5 more rows in results.json" in page


def test_text_is_escaped_and_html_blocks_are_trusted(context, temporary_sections, tmp_path):
    page = write_report(context, tmp_path, sections=["zz_figure"]).html.read_text()
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;markup&lt;/b&gt; &amp; a NaN" in page
    assert "<td>&lt;i&gt;a&lt;/i&gt;</td>" in page
    assert "tiny &lt;mlp&gt;" in page
    assert '<p class="trusted">trusted</p>' in page
    assert "cap &lt;x&gt;" in page


def test_page_is_self_contained(context, temporary_sections, tmp_path):
    page = write_report(context, tmp_path, sections=temporary_sections).html.read_text()
    # No attribute may point anywhere outside the page: no src/href/url() with a scheme or //.
    for attribute in re.findall(r'(?:src|href|action|poster|data)\s*=\s*["\']([^"\']*)["\']', page, re.I):
        assert attribute.startswith(("#", "data:")), attribute
    assert not re.search(r"url\(\s*['\"]?(?!#|data:)", page)
    assert not re.search(r"@import|<script[^>]*\bsrc=|<link[^>]*stylesheet|<iframe", page, re.I)
    # No URL at all: figures lose matplotlib's RDF metadata and namespace declarations (not needed inline).
    assert not re.search(r"https?://|ftp://|//[a-z0-9.-]+\.[a-z]{2,}/", page, re.I)


def test_results_json_is_strict_and_marked(context, temporary_sections, tmp_path):
    paths = write_report(context, tmp_path, sections=["zz_figure", "zz_failing"])
    text = paths.json.read_text()

    def refuse_constant(name):
        raise AssertionError(f"non-strict JSON constant {name}")

    results = json.loads(text, parse_constant=refuse_constant)
    assert results["generator"] == "deepscope"
    assert results["sections"]["zz_figure"]["results"]["value"] == "nan"
    assert results["sections"]["zz_figure"]["results"]["tensor"] == [1.0, "inf"]
    assert results["model_name"] == "tiny <mlp>"
    assert results["dataset"] == {"train_size": 24, "test_size": 12}
    assert results["model"]["parameters"] == 4 * 8 + 8 + 8 * 3 + 3
    # The model is in train mode with one Dropout (module "2"): the header says analyses ran in eval semantics.
    assert results["guard_note"].startswith("The model was in train mode with 1 stochastic module(s) (2)")
    assert GENERATOR_META in paths.html.read_text()


def test_sections_see_the_context_seed_whatever_ran_before(context, temporary_sections, tmp_path):
    alone = json.loads(write_report(context, tmp_path / "a", sections=["zz_seed"]).json.read_text())
    after = json.loads(write_report(context, tmp_path / "b", sections=["zz_figure", "zz_seed"]).json.read_text())
    draw = alone["sections"]["zz_seed"]["results"]["draw"]
    assert draw == after["sections"]["zz_seed"]["results"]["draw"]
    torch.manual_seed(context.seed)
    assert draw == float(torch.rand(()))


def test_caller_rng_state_is_left_alone(context, temporary_sections, tmp_path):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    write_report(context, tmp_path, sections=["zz_seed"])
    assert torch.equal(torch.rand(3), expected)


def test_overwrite_policy(context, temporary_sections, tmp_path):
    first = write_report(context, tmp_path, sections=["zz_figure"])
    # A file deepscope wrote is replaced without asking.
    second = write_report(context, tmp_path, sections=["zz_seed"])
    assert "zz_seed" in json.loads(second.json.read_text())["sections"]
    assert first == second
    # A file the user wrote is never replaced silently, and nothing is written when refused.
    user_dir = tmp_path / "user"
    user_dir.mkdir()
    (user_dir / "report.html").write_text("<html>my own notes</html>")
    with pytest.raises(DeepscopeError, match="not written by deepscope.*overwrite=True"):
        write_report(context, user_dir, sections=["zz_seed"])
    assert (user_dir / "report.html").read_text() == "<html>my own notes</html>"
    assert not (user_dir / "results.json").exists()
    (user_dir / "report.html").unlink()
    (user_dir / "results.json").write_text(json.dumps({"generator": "someone else"}))
    with pytest.raises(DeepscopeError, match="results.json"):
        write_report(context, user_dir, sections=["zz_seed"])
    paths = write_report(context, user_dir, sections=["zz_seed"], overwrite=True)
    assert json.loads(paths.json.read_text())["generator"] == "deepscope"
    # No temporary files are left behind: the pair, and deepscope's state folder holding one generation.
    assert sorted(p.name for p in user_dir.iterdir()) == [".deepscope", "report.html", "results.json"]
    state = sorted(p.name for p in (user_dir / ".deepscope" / "report").iterdir())
    assert len(state) == 3 and state[0] == "current" and state[1].startswith("gen-") and state[2] == "lock"


def test_output_path_that_is_a_file_is_refused(context, temporary_sections, tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("x")
    with pytest.raises(DeepscopeError, match="not a directory"):
        write_report(context, target, sections=["zz_seed"])


@pytest.mark.parametrize("sections", [["no_such_section"], [], "zz_seed", [["zz_seed"]], {"zz_seed"}])
def test_bad_section_selection_is_refused(context, temporary_sections, tmp_path, sections):
    with pytest.raises(InvalidParameterError, match="The 'sections' parameter of write_report must be"):
        write_report(context, tmp_path, sections=sections)


def test_bad_arguments(context, tmp_path):
    with pytest.raises(InvalidParameterError, match="'context' parameter of write_report"):
        write_report("not a context", tmp_path)
    with pytest.raises(InvalidParameterError, match="'out_dir' parameter of write_report"):
        write_report(context, 42)


def test_a_module_that_fails_to_import_is_named_and_the_report_still_written(
    context, temporary_sections, tmp_path, monkeypatch
):
    from deepscope.report import sections as registry

    monkeypatch.setattr(registry, "SECTION_ORDER", (*registry.SECTION_ORDER, ("broken", "deepscope.report.nosvg")))
    paths = write_report(context, tmp_path, sections=["zz_seed"])
    results = json.loads(paths.json.read_text())
    assert results["import_failures"] == [
        {"module": "deepscope.report.nosvg", "error": "ModuleNotFoundError: No module named 'deepscope.report.nosvg'"}
    ]
    assert results["sections"]["zz_seed"]["status"] == "ok"
    assert "Module deepscope.report.nosvg failed to import (ModuleNotFoundError: " in paths.html.read_text()


def test_each_block_states_its_cost_in_the_page_and_the_json(context, temporary_sections, tmp_path):
    paths = write_report(context, tmp_path, sections=["zz_costed", "zz_figure"])
    costs = json.loads(paths.json.read_text())["sections"]["zz_costed"]["costs"]
    assert [cost["block"] for cost in costs] == ["Cheap <block>", "Dear block"]
    assert costs[0]["passes"] == 12 and costs[0]["seconds"] >= 0 and costs[1]["declined"] == "too dear"
    page = paths.html.read_text()
    assert "Cost per block: Cheap &lt;block&gt;: " in page and "12 example passes" in page
    assert "Dear block: declined (estimated 900 s)" in page
    # a section built without blocks has no cost line
    figure = re.search(r'id="section-zz_figure".*?</section>', page, re.S).group(0)
    assert "Cost per block" not in figure
