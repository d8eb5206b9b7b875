"""The section registry (explicit SECTION_ORDER) and per-block isolation (run_block, Section.from_parts)."""

from __future__ import annotations

import importlib
import json

import pytest

from deepscope.report import html as writer
from deepscope.report.page import render_block
from deepscope.report.sections import (
    SECTION_ORDER,
    SECTIONS,
    AuditContext,
    Html,
    Part,
    Section,
    Table,
    Text,
    load_sections,
    ordered_sections,
    register_section,
    run_block,
)


def test_the_explicit_list_is_what_is_registered():
    assert load_sections() == []
    builtin = [spec for spec in ordered_sections() if not spec.key.startswith("zz_")]
    assert [spec.key for spec in builtin] == [key for key, _ in SECTION_ORDER]
    for key, module in SECTION_ORDER:
        assert SECTIONS[key].builder.__module__ == module, key


def test_every_family_owns_its_section():
    owners = {module.split(".")[1] for _, module in SECTION_ORDER}
    assert owners == {"models", "dynamics", "generalization", "attribution", "expressivity", "curvature"}
    assert all(module.endswith(".report_section") for _, module in SECTION_ORDER)


def test_no_package_walk_finds_sections():
    source = importlib.util.find_spec("deepscope.report.html").origin
    text = open(source, encoding="utf-8").read()
    assert "walk_packages" not in text and "load_all_analyses" not in text


def test_a_module_that_fails_to_import_is_named_by_load_sections(monkeypatch):
    monkeypatch.setattr(
        "deepscope.report.sections.SECTION_ORDER", (*SECTION_ORDER, ("broken", "deepscope.no_such_module"))
    )
    failures = load_sections()
    assert failures == [("deepscope.no_such_module", "ModuleNotFoundError: No module named 'deepscope.no_such_module'")]
    assert writer.import_all_modules() == failures


def test_run_block_returns_the_part_of_a_block_that_works():
    part = Part([Text("fine")], {"x": 1}, "x is 1", cost={"passes": 12})
    got = run_block("X", lambda: part)
    assert (got.blocks, got.results, got.sentence, got.error) == (part.blocks, part.results, part.sentence, None)
    # the block's own cost entries are kept; run_block adds its label and wall-clock seconds
    assert got.cost["block"] == "X" and got.cost["passes"] == 12 and got.cost["seconds"] >= 0.0


def test_section_lists_the_cost_of_each_block():
    parts = [
        run_block("A", lambda: Part([Text("a")], cost={"passes": 3})),
        run_block("B", lambda: _raise("broken")),
        Part([Text("not timed")]),
    ]
    section = Section.from_parts(parts, summary=lambda _: "")
    assert [cost["block"] for cost in section.costs] == ["A", "B"]
    assert section.costs[0]["passes"] == 3 and section.costs[1]["error"] == "RuntimeError: broken"


def _raise(message):
    raise RuntimeError(message)


def test_run_block_turns_an_exception_into_an_error_box():
    part = run_block("Spectral <metrics>", lambda: _raise("no <svd> today"))
    assert part.error == "Spectral <metrics>: RuntimeError: no <svd> today"
    assert part.results == {} and part.sentence == ""
    (box,) = part.blocks
    assert isinstance(box, Html)
    html = render_block(box)
    assert 'class="error-box"' in html and "Spectral &lt;metrics&gt; failed" in html and "no &lt;svd&gt; today" in html


def test_run_block_refuses_a_builder_that_returns_no_part():
    part = run_block("Table", lambda: [Text("not a part")])
    assert part.error == "Table: TypeError: the block builder returned list, expected a Part"


def test_a_section_where_one_block_raises_renders_its_other_blocks_and_the_error():
    parts = [
        run_block("First", lambda: Part([Text("first block")], {"first": 1}, "first is fine")),
        run_block("Second", lambda: _raise("second is broken")),
        run_block("Third", lambda: Part([Table([{"a": 1}])], {"third": 3}, "third is fine")),
    ]
    section = Section.from_parts(parts, summary=lambda clauses: "; ".join(clauses))
    assert section.summary == "first is fine; third is fine"
    assert [type(b) for b in section.blocks] == [Text, Html, Table]
    assert section.results == {"first": 1, "third": 3, "block_errors": ["Second: RuntimeError: second is broken"]}


def test_a_clean_section_has_no_block_errors_entry():
    section = Section.from_parts([Part([Text("a")], {"a": 1})], summary=lambda clauses: "s")
    assert section.results == {"a": 1}


def test_a_failing_block_shows_in_the_written_report(tmp_path):
    import torch

    from deepscope import Problem

    def builder(context):
        parts = [
            run_block("Good", lambda: Part([Text("the good block")], {"good": True})),
            run_block("Bad", lambda: _raise("the bad block")),
        ]
        return Section.from_parts(parts, summary=lambda clauses: "mixed")

    register_section("zz_blocks", title="Blocks", order=1003)(builder)
    try:
        problem = Problem(torch.nn.Linear(3, 2), (torch.randn(8, 3), torch.randint(0, 2, (8,))))
        paths = writer.write_report(AuditContext(problem), tmp_path, sections=["zz_blocks"])
    finally:
        SECTIONS.pop("zz_blocks", None)
    entry = json.loads(paths.json.read_text())["sections"]["zz_blocks"]
    assert entry["status"] == "ok"
    assert entry["results"] == {"good": True, "block_errors": ["Bad: RuntimeError: the bad block"]}
    page = paths.html.read_text()
    assert "the good block" in page and "Bad failed" in page and "the bad block" in page


@pytest.mark.parametrize("key", [key for key, _ in SECTION_ORDER])
def test_each_listed_section_has_a_title(key):
    assert SECTIONS[key].title


def test_a_section_whose_every_block_failed_fails_as_a_whole():
    parts = [run_block("One", lambda: _raise("first")), run_block("Two", lambda: _raise("second"))]
    with pytest.raises(RuntimeError, match="first"):
        Section.from_parts(parts, summary=lambda clauses: "never")
    assert Section.from_parts([], summary=lambda clauses: "empty").blocks == []


def test_a_refused_model_fails_the_curvature_section_as_a_whole(tmp_path):
    import torch

    from deepscope.errors import NonFiniteError
    from deepscope.report import audit

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    with torch.no_grad():
        model[1].weight[0, 0] = float("nan")
    data = ((torch.randn(16, 4), torch.randint(0, 3, (16,))), None)
    with pytest.raises(NonFiniteError):
        audit(model, data, out=tmp_path, sections=["model_card", "curvature"])
    sections = json.loads((tmp_path / "results.json").read_text())["sections"]
    assert sections["model_card"]["status"] == "ok"
    assert sections["curvature"]["status"] == "error" and sections["curvature"]["error_type"] == "NonFiniteError"
