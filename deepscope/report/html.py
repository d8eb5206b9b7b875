"""The report writer: every registered section into one self-contained ``report.html`` and ``results.json``.

The HTML page has inline CSS and inline SVG figures, no scripts and no external URLs, so it opens
offline and makes no network requests. Each section runs inside its own ``try``: a section that
raises is shown with its error (and its traceback, collapsed) and the others are still written;
``results.json`` records ``{"status": "error", "error": ...}`` for it. Both files carry a
``generator: deepscope`` marker, so a later run may replace them but never a file the user wrote.
The page's look and the rendering of blocks live in :mod:`deepscope.report.page` (public:
:func:`~deepscope.report.render_page`), shared with ``deepscope explain``.

The two files are one unit (:class:`deepscope.report._write.OutputUnit`): the output directory is
probed for writability before any section runs, and after a crash or a full disk at any moment it
holds either the previous complete pair or the new complete pair, never a mix.

Example:
    >>> import torch, tempfile
    >>> from deepscope import Problem
    >>> from deepscope.report import AuditContext
    >>> problem = Problem(torch.nn.Linear(3, 2), (torch.randn(8, 3), torch.randint(0, 2, (8,))))
    >>> paths = write_report(AuditContext(problem), tempfile.mkdtemp(), sections=[])  # doctest: +SKIP
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from tqdm.auto import tqdm

from deepscope.errors import invalid_parameter
from deepscope.guard import GuardReport, stochastic_modules
from deepscope.report._write import GENERATOR_META, OutputUnit, check_overwrite
from deepscope.report.page import MAX_TABLE_ROWS, page_html
from deepscope.report.page import escape as _escape
from deepscope.report.page import render_block as _render_block
from deepscope.report.sections import SECTIONS, AuditContext, Section, load_sections, ordered_sections
from deepscope.results import to_jsonable

__all__ = ["ReportPaths", "write_report", "import_all_modules", "GENERATOR_META", "MAX_TABLE_ROWS"]

_HTML_NAME, _JSON_NAME = "report.html", "results.json"


class ReportPaths(NamedTuple):
    """Where the report was written."""

    html: Path
    json: Path


def import_all_modules() -> list[tuple[str, str]]:
    """Import the modules that register the report's sections (:data:`~deepscope.report.sections.SECTION_ORDER`).

    Returns the modules that failed to import as ``(name, "ErrorType: message")`` pairs (empty
    when all imported); one broken module never stops the report. The list is explicit: no
    package walk, so what the report contains can be read in one place.
    """
    return load_sections()


def write_report(
    context: AuditContext,
    out_dir: str | os.PathLike[str],
    *,
    sections: Sequence[str] | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> ReportPaths:
    """Run the selected report sections on ``context`` and write ``report.html`` and ``results.json``.

    Args:
        context: the :class:`~deepscope.report.AuditContext` (problem, dataset, history, budget, seed).
        out_dir: output directory (created if missing).
        sections: section keys to run (default: every registered section), rendered in registry order.
        overwrite: replace a report.html/results.json that deepscope did not write. Files an earlier
            deepscope run wrote are always replaced.
        progress: show a progress bar on stderr.

    Returns:
        ``ReportPaths(html, json)``.

    Raises:
        InvalidParameterError: an unknown section key or a bad argument.
        DeepscopeError: the directory holds report files deepscope did not write and overwrite is False;
            the directory is not writable or the disk is full (checked before any section runs); a
            write failed at the end (the previous report.html/results.json pair is then kept).
    """
    if not isinstance(context, AuditContext):
        raise invalid_parameter("context", "write_report", "an AuditContext", context)
    if not isinstance(out_dir, (str, os.PathLike)):
        raise invalid_parameter("out_dir", "write_report", "a directory path", out_dir)
    import_failures = import_all_modules()
    selected = _select_sections(sections)
    out = Path(out_dir)
    html_path, json_path = out / _HTML_NAME, out / _JSON_NAME
    check_overwrite(out, (html_path, json_path), overwrite)
    with OutputUnit(out, "report") as unit:  # writable? (before the work) and one writer at a time
        payload, page = _build_report(context, selected, import_failures, progress)
        unit.commit({_JSON_NAME: payload, _HTML_NAME: page})
    return ReportPaths(html=html_path, json=json_path)


def _build_report(
    context: AuditContext, selected: list[Any], import_failures: list[tuple[str, str]], progress: bool
) -> tuple[str, str]:
    """Run the sections; return the text of results.json and of report.html."""
    started = time.perf_counter()
    outcomes = []
    bar = tqdm(selected, desc="deepscope report", unit="section", disable=not progress, file=sys.stderr)
    for spec in bar:
        bar.set_postfix_str(spec.key)
        outcomes.append(_run_section(spec, context))
    bar.close()
    header = _header_facts(context, import_failures)
    header["seconds"] = round(time.perf_counter() - started, 3)

    payload = {
        "generator": "deepscope",
        **header,
        "sections": {outcome["key"]: outcome["json"] for outcome in outcomes},
    }
    json_text = json.dumps(to_jsonable(payload), indent=2, allow_nan=False)
    return json_text + "\n", _render_page(header, outcomes)


# ----------------------------------------------------------------------------------- selection
def _select_sections(sections: Sequence[str] | None) -> list[Any]:
    ordered = ordered_sections()
    if sections is None:
        return ordered
    known = ", ".join(spec.key for spec in ordered) or "none registered"
    expected = f"a non-empty list of registered section keys ({known})"
    if isinstance(sections, str) or not isinstance(sections, Sequence) or not sections:
        raise invalid_parameter("sections", "write_report", expected, sections)
    if not all(isinstance(key, str) for key in sections):
        raise invalid_parameter("sections", "write_report", expected, list(sections))
    unknown = [key for key in sections if key not in SECTIONS]
    if unknown:
        raise invalid_parameter("sections", "write_report", expected, unknown)
    wanted = set(sections)
    return [spec for spec in ordered if spec.key in wanted]


# ----------------------------------------------------------------------------------- running
def _run_section(spec: Any, context: AuditContext) -> dict[str, Any]:
    """Build and render one section; any exception becomes an error entry, never escapes."""
    started = time.perf_counter()
    try:
        with torch.random.fork_rng(devices=[]):  # every section sees the same seed, whatever ran before
            torch.manual_seed(context.seed)
            section = spec.builder(context)
        if not isinstance(section, Section):
            raise TypeError(f"the section builder returned {type(section).__name__}, expected a Section")
        body = "".join(_render_block(block) for block in section.blocks)
        results = to_jsonable(section.results)
        seconds = time.perf_counter() - started
        costs = to_jsonable(list(section.costs))
        return {
            "key": spec.key,
            "title": spec.title,
            "status": "ok",
            "summary": str(section.summary),
            "body": body + _render_costs(costs),
            "seconds": seconds,
            "json": {
                "title": spec.title,
                "status": "ok",
                "summary": str(section.summary),
                "seconds": round(seconds, 3),
                "costs": costs,
                "results": results,
            },
        }
    except Exception as error:  # noqa: BLE001 - a failing section must not stop the report
        seconds = time.perf_counter() - started
        trace = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        message = _describe_error(error)
        return {
            "key": spec.key,
            "title": spec.title,
            "status": "error",
            "summary": f"This section failed: {message}",
            "body": _render_error(error, trace),
            "seconds": seconds,
            "json": {
                "title": spec.title,
                "status": "error",
                "error": message,
                "error_type": type(error).__name__,
                "traceback": trace,
                "seconds": round(seconds, 3),
            },
        }


def _render_costs(costs: list[dict[str, Any]]) -> str:
    """One line naming each block's cost: seconds, example passes when known, or why it was declined."""
    if not costs:
        return ""
    items = []
    for cost in costs:
        label = str(cost.get("block", "block"))
        if cost.get("not_applicable"):
            items.append(f"{label}: does not apply")
            continue
        if cost.get("declined"):
            items.append(f"{label}: declined (estimated {float(cost.get('estimated_seconds', 0.0)):.3g} s)")
            continue
        text = f"{label}: {float(cost.get('seconds', 0.0)):.2f} s"
        if cost.get("passes") is not None:
            text += f", {float(cost['passes']):.4g} example passes"
        items.append(text)
    return '<p class="timing">Cost per block: ' + _escape("; ".join(items)) + ".</p>"


def _describe_error(error: BaseException | None) -> str:
    if error is None:
        return "unknown error"
    message = str(error).strip()
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def _header_facts(context: AuditContext, import_failures: list[tuple[str, str]]) -> dict[str, Any]:
    import deepscope

    problem = context.problem
    model = getattr(problem, "model", None)
    facts: dict[str, Any] = {
        "deepscope_version": deepscope.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "model_name": str(context.model_name),
        "budget": context.budget,
        "seed": context.seed,
    }
    if isinstance(model, torch.nn.Module):
        facts["model"] = {
            "class": type(model).__name__,
            "parameters": sum(p.numel() for p in model.parameters()),
            "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        }
        facts["guard_note"] = GuardReport(mode="eval", switched_to_eval=stochastic_modules(model)).note
    dataset = context.dataset
    if dataset is not None and hasattr(dataset, "summary"):
        facts["dataset"] = dict(dataset.summary())
        facts["dataset"]["description"] = getattr(dataset, "description", "")
    elif problem is not None and hasattr(problem, "train"):
        test = getattr(problem, "test", None)
        facts["dataset"] = {"train_size": len(problem.train), "test_size": len(test) if test is not None else 0}
    facts["loss"] = getattr(problem, "loss_name", None)
    facts["import_failures"] = [{"module": name, "error": error} for name, error in import_failures]
    return facts


# ----------------------------------------------------------------------------------- rendering
def _render_error(error: BaseException, trace: str) -> str:
    return (
        '<div class="error-box"><p><strong>'
        + _escape(type(error).__name__)
        + "</strong>: "
        + _escape(str(error))
        + "</p><details><summary>Traceback</summary><pre>"
        + _escape(trace)
        + "</pre></details></div>"
    )


def _dataset_line(dataset: dict[str, Any] | None) -> str:
    if not dataset:
        return "unknown"
    parts = [str(dataset["name"])] if dataset.get("name") else []
    parts.append(f"{dataset.get('train_size', '?')} train / {dataset.get('test_size', 0)} test examples")
    if dataset.get("input_shape"):
        parts.append("input shape (" + ", ".join(map(str, dataset["input_shape"])) + ")")
    if dataset.get("num_classes"):
        parts.append(f"{dataset['num_classes']} classes")
    return ", ".join(parts)


def _render_page(header: dict[str, Any], outcomes: list[dict[str, Any]]) -> str:
    model = header.get("model") or {}
    model_text = header["model_name"]
    if model:
        model_text += (
            f" ({model['class']}, {model['parameters']:,} parameters, {model['trainable_parameters']:,} trainable)"
        )
    facts = [
        ("Model", model_text),
        ("Data", _dataset_line(header.get("dataset"))),
        ("Source", (header.get("dataset") or {}).get("description") or ""),
        ("Loss", header.get("loss") or "unknown"),
        ("Budget", f"{header['budget']} (seed {header['seed']})"),
        ("deepscope", header["deepscope_version"]),
        ("Created", header["created"]),
        ("Run time", f"{header['seconds']:.1f} s"),
    ]
    notes = []
    if header.get("guard_note"):
        notes.append(header["guard_note"])
    for failure in header.get("import_failures", []):
        notes.append(f"Module {failure['module']} failed to import ({failure['error']}); its sections are missing.")
    toc, sections = [], []
    for outcome in outcomes:
        anchor = "section-" + outcome["key"]
        status = "error" if outcome["status"] == "error" else ""
        badge_text = "failed" if status else f"{outcome['seconds']:.1f} s"
        toc.append(
            f'<li><a href="#{anchor}">{_escape(outcome["title"])}</a>'
            f'<span class="badge {status}">{badge_text}</span></li>'
        )
        sections.append(
            f'<section class="report-section" id="{anchor}" data-status="{outcome["status"]}">'
            f"<h2>{_escape(outcome['title'])}</h2>"
            f'<p class="summary">{_escape(outcome["summary"])}</p>'
            f"{outcome['body']}"
            f'<footer class="timing">{_escape(outcome["key"])}: {outcome["seconds"]:.2f} s</footer></section>'
        )
    toc_html = f'<nav class="toc"><strong>Contents</strong><ol>{"".join(toc)}</ol></nav>' if toc else ""
    return page_html(f"deepscope report: {header['model_name']}", facts, notes, toc_html + "".join(sections))
