"""All-or-nothing output units: a generation switched in one step, one writer at a time, user files kept."""

from __future__ import annotations

import json
import os

import pytest

from deepscope.errors import DeepscopeError
from deepscope.report._write import GENERATOR_META, STATE_DIR, OutputUnit, check_overwrite, written_by_deepscope


def test_a_commit_switches_in_every_file_together(tmp_path):
    with OutputUnit(tmp_path, "report") as unit:
        paths = unit.commit({"report.html": "<p>one</p>", "results.json": b"{}", "extra.txt": "x"})
    assert paths["report.html"] == tmp_path / "report.html" and (tmp_path / "results.json").read_bytes() == b"{}"
    assert os.path.islink(tmp_path / "report.html")  # relative links into the current generation
    assert not os.path.isabs(os.readlink(tmp_path / "report.html"))
    with OutputUnit(tmp_path, "report") as unit:
        unit.commit({"report.html": "<p>two</p>", "results.json": "[]"})
    assert (tmp_path / "report.html").read_text() == "<p>two</p>"
    assert not (tmp_path / "extra.txt").exists()  # a file the new generation lacks is gone with the old one
    generations = [p for p in (tmp_path / STATE_DIR / "report").iterdir() if p.name.startswith("gen-")]
    assert len(generations) == 1


def test_a_writer_may_add_sibling_files(tmp_path):
    def writer(path):
        path.write_text("weights")
        path.with_suffix(".json").write_text("{}")

    with OutputUnit(tmp_path, "train") as unit:
        unit.commit({"model.safetensors": writer})
    assert (tmp_path / "model.safetensors").read_text() == "weights" and (tmp_path / "model.json").exists()


def test_one_writer_per_unit_and_a_file_in_the_way(tmp_path):
    with OutputUnit(tmp_path, "report"):
        with pytest.raises(DeepscopeError, match="Another deepscope run is writing its report"):
            OutputUnit(tmp_path, "report").prepare()
        with OutputUnit(tmp_path, "explain") as other:  # another unit may share the directory
            other.commit({"explain.json": "{}"})
    (tmp_path / "file").write_text("x")
    with pytest.raises(DeepscopeError, match="exists and is not a directory"):
        OutputUnit(tmp_path / "file", "report").prepare()


def test_check_overwrite_keeps_files_deepscope_did_not_write(tmp_path):
    mine, theirs = tmp_path / "report.html", tmp_path / "results.json"
    mine.write_text(f"<html>{GENERATOR_META}</html>")
    theirs.write_text(json.dumps({"generator": "someone else"}))
    assert written_by_deepscope(mine) and not written_by_deepscope(theirs)
    check_overwrite(tmp_path, (mine,), overwrite=False)
    with pytest.raises(DeepscopeError, match="exists and was not written by deepscope"):
        check_overwrite(tmp_path, (mine, theirs), overwrite=False)
    check_overwrite(tmp_path, (theirs,), overwrite=True)
    (tmp_path / "dir.html").mkdir()
    with pytest.raises(DeepscopeError, match="is a directory"):
        check_overwrite(tmp_path, (tmp_path / "dir.html",), overwrite=True)
    assert not written_by_deepscope(tmp_path / "missing.json")
