"""The gallery: every experiment run in turn, a failing one listed with its error, and the index page."""

from __future__ import annotations

import json

import deepscope.experiments as experiments
import deepscope.experiments._base as base
from deepscope.errors import DeepscopeError
from deepscope.experiments._gallery import run_gallery, write_index


def test_index_lists_verdicts_and_errors(tmp_path):
    entries = [
        {"experiment": "a", "title": "A & B", "claim": "c1", "page": "a.html",
         "verdict": {"held": True, "detail": "p = 0.01"}},
        {"experiment": "b", "title": "B", "claim": "c2", "page": "b.html", "verdict": {"held": None, "detail": "few"}},
        {"experiment": "c", "title": "C", "claim": "c3", "page": "c.html", "error": "boom"},
    ]  # fmt: skip
    path = write_index(tmp_path, entries)
    page = path.read_text()
    assert 'href="a.html"' in page and "A &amp; B" in page
    assert "held — p = 0.01" in page and "inconclusive — few" in page and "not run: boom" in page
    assert "1 of 3 claims held" in page
    assert "http://" not in page and "https://" not in page
    assert json.loads((tmp_path / "index.json").read_text())["experiments"][2]["error"] == "boom"


def test_run_gallery_runs_every_experiment_and_lists_a_failure(tmp_path, monkeypatch):
    names = list(experiments.EXPERIMENTS)[:2]
    monkeypatch.setattr(experiments, "EXPERIMENTS", names)
    calls = []

    def fake_run(name, out, *, budget, progress, **options):
        calls.append((name, budget, options))
        if name == names[0]:
            raise DeepscopeError("no data")
        return {"verdict": {"held": True, "detail": "p = 0.001"}, "models": 4}

    monkeypatch.setattr(base, "run_experiment", fake_run)
    entries = run_gallery(tmp_path, budget="small", progress=False, workers=1)
    assert [call[0] for call in calls] == names and calls[0][2] == {"workers": 1}  # the failure did not stop the rest
    assert entries[0]["error"] == "no data" and entries[1]["models"] == 4
    assert entries[1]["page"] == f"{names[1]}.html" and entries[1]["title"] == base.experiment_module(names[1]).TITLE
    index = json.loads((tmp_path / "index.json").read_text())
    assert [e["experiment"] for e in index["experiments"]] == names
    assert "1 of 2 claims held" in (tmp_path / "index.html").read_text()
