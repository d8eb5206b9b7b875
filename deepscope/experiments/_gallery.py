"""``deepscope experiment all``: run every experiment and write the gallery's index page.

The index (``index.html`` + ``index.json``) lists each experiment with its claim, its verdict and a
link to its page; an experiment that failed is listed with its error, and the others still run.
"""

from __future__ import annotations

import datetime
import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from deepscope.errors import DeepscopeError
from deepscope.results import to_jsonable

__all__ = ["run_gallery", "write_index"]


def run_gallery(
    out: str | Path, *, budget: str = "small", progress: bool = True, **options: Any
) -> list[dict[str, Any]]:
    """Run every experiment of ``EXPERIMENTS`` into ``out`` and write the index; returns its entries."""
    from deepscope.experiments import EXPERIMENTS
    from deepscope.experiments._base import experiment_module, run_experiment

    entries = []
    for name in EXPERIMENTS:
        module = experiment_module(name)
        entry = {"experiment": name, "title": module.TITLE, "claim": module.CLAIM, "page": f"{name}.html"}
        try:
            payload = run_experiment(name, out, budget=budget, progress=progress, **options)
            entry.update(verdict=payload["verdict"], models=payload["models"], budget=budget)
        except DeepscopeError as error:
            entry.update(error=str(error), budget=budget)
        entries.append(entry)
    write_index(out, entries)
    return entries


def write_index(out: str | Path, entries: Sequence[Mapping[str, Any]]) -> Path:
    """Write ``index.html`` and ``index.json`` listing the experiments' verdicts, as one unit."""
    import deepscope
    from deepscope.report import OutputUnit
    from deepscope.sweep._report_text import page

    out = Path(out)
    rows = []
    for entry in entries:
        verdict = entry.get("verdict")
        if verdict is None:
            outcome = f"not run: {entry.get('error', 'no result')}"
        else:
            outcome = {True: "held", False: "did not hold", None: "inconclusive"}[verdict["held"]]
            outcome += f" — {verdict['detail']}"
        link = f'<a href="{html.escape(entry["page"])}">{html.escape(entry["title"])}</a>'
        rows.append(f"<tr><td>{link}</td><td>{html.escape(entry['claim'])}</td><td>{html.escape(outcome)}</td></tr>")
    table = (
        "<table><thead><tr><th>experiment</th><th>claim</th><th>verdict at this budget</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
    created = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    header = {
        "name": "the theory gallery",
        "description": "Classic phenomena of deep-learning theory, reproduced on real training runs with a stated test.",
        "store": "",
        "deepscope_version": deepscope.__version__,
        "created": created,
    }
    held = sum(1 for e in entries if (e.get("verdict") or {}).get("held") is True)
    summary = html.escape(f"{held} of {len(entries)} claims held at this budget.")
    text = json.dumps(
        to_jsonable({"generator": "deepscope", "created": created, "experiments": list(entries)}), indent=2
    )
    with OutputUnit(out, "gallery-index") as unit:
        unit.commit(
            {
                "index.json": text + "\n",
                "index.html": page(header, [("gallery", "Experiments", summary, table)], kind="gallery"),
            }
        )
    return out / "index.html"
