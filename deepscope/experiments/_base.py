"""The theory gallery's machinery: run an experiment's sweep, analyse the population, write its page.

An experiment is a module of :mod:`deepscope.experiments` (listed in ``EXPERIMENTS``) defining:

* ``NAME``, ``TITLE``, ``CLAIM`` (the qualitative claim, one or two sentences), ``REFERENCES``
  (a list of citations) and ``protocol(spec) -> str`` (what was run, in words);
* ``spec(budget) -> dict``: the sweep spec for ``"small"`` (a 2-core machine, under 10 minutes)
  or ``"full"`` (paper scale, for a Ray cluster);
* ``check(spec) -> list[(key path, message)]``: what makes the experiment meaningless (one grid
  point, too few seeds for its test) — refused before anything runs;
* ``analyse(frame, spec, store) -> Outcome``: the figures, tables, numbers and the :class:`Verdict`,
  decided by a stated statistical test on the stored population (``frame`` is
  :func:`deepscope.sweep.load`'s DataFrame; ``store`` the sweep's SQLite path, for
  per-run histories via :class:`deepscope.sweep.SweepStore`);
* optionally ``PARAMS`` and ``run_kind(config)``: a trial kind of its own (see
  :mod:`deepscope.sweep.kinds`).

:func:`run_experiment` runs the sweep into ``<out>/<name>-<budget>.db`` (so an interrupted
experiment resumes), analyses it and writes ``<name>.html`` and ``<name>.json`` as one unit.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import html
import importlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from deepscope.errors import DeepscopeError, invalid_parameter
from deepscope.results import Result, format_value, to_jsonable

__all__ = ["Verdict", "Outcome", "experiment_module", "experiment_spec", "run_experiment", "BUDGETS"]

BUDGETS = ("small", "full")


@dataclasses.dataclass(frozen=True)
class Verdict(Result):
    """Whether the claim held at this budget, and by which test.

    Attributes:
        held: True (the claim held), False (it did not), None (this budget cannot decide).
        test: the statistical test, stated (e.g. "one-sided Wilcoxon signed-rank over 3 seeds").
        statistic: the test statistic. p_value: its p-value (None where the test has none).
        alpha: the significance level the decision used.
        detail: one sentence with the numbers behind the decision.
    """

    held: bool | None
    test: str
    statistic: float
    p_value: float | None
    alpha: float
    detail: str

    def summary(self) -> str:
        word = {True: "held", False: "did not hold", None: "inconclusive"}[self.held]
        return f"{word}: {self.detail}"


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What an experiment's analysis produced: figures (svg, caption), tables, numbers, verdict."""

    verdict: Verdict
    figures: list[tuple[str, str]]
    tables: list[tuple[str, list[str], list[dict[str, Any]]]]  # (caption, columns, rows)
    numbers: dict[str, Any]
    notes: list[str] = dataclasses.field(default_factory=list)


def experiment_module(name: str) -> ModuleType:
    """The module of a registered experiment (only names in ``EXPERIMENTS`` are imported)."""
    from deepscope.experiments import EXPERIMENTS

    if name not in EXPERIMENTS:
        raise invalid_parameter("name", "experiment", "one of " + ", ".join(map(repr, EXPERIMENTS)) + " or 'all'", name)
    return importlib.import_module(f"deepscope.experiments.{name}")


def _set_path(spec: dict[str, Any], path: str, value: Any) -> None:
    """Set ``a.b.c`` in a nested dict; grid axes are ``search.grid.<section>.<key>``."""
    if path.startswith("search.grid."):
        spec.setdefault("search", {}).setdefault("grid", {})[path[len("search.grid.") :]] = value
        return
    target = spec
    *parents, last = path.split(".")
    for part in parents:
        if not isinstance(target.get(part, {}), dict):
            raise DeepscopeError(f"Cannot set {path!r}: {part!r} is not a table.")
        target = target.setdefault(part, {})
    target[last] = value


def experiment_spec(name: str, budget: str = "small", overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The validated sweep spec of an experiment at a budget, with ``overrides`` (path -> value) applied.

    Raises:
        InvalidParameterError: unknown experiment or budget.
        SpecError: the overrides make the spec invalid, or the experiment meaningless.
    """
    from deepscope.sweep.spec import SpecError, parse_spec

    module = experiment_module(name)
    if budget not in BUDGETS:
        raise invalid_parameter("budget", "experiment", "one of 'small', 'full'", budget)
    raw = copy.deepcopy(module.spec(budget))
    for path, value in (overrides or {}).items():
        _set_path(raw, path, value)
    spec = parse_spec(raw)
    problems = module.check(spec)
    if problems:
        raise SpecError(
            [(path, f"{message} (experiment {name!r} needs it to test its claim)") for path, message in problems]
        )
    return spec


def run_experiment(
    name: str,
    out: str | Path,
    *,
    budget: str = "small",
    overrides: Mapping[str, Any] | None = None,
    executor: str = "local",
    workers: int = 1,
    address: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run (or resume) one experiment and write its page; returns its JSON payload.

    The sweep goes to ``<out>/<name>-<budget>.db``; the page to ``<out>/<name>.html`` and the raw
    results to ``<out>/<name>.json``, written as one unit.
    """
    from deepscope.sweep import load, run

    module = experiment_module(name)
    spec = experiment_spec(name, budget, overrides)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    store = out / f"{name}-{budget}.db"
    run(spec, store, executor=executor, workers=workers, address=address, progress=progress)
    frame = load(store)
    if frame.empty:
        raise DeepscopeError(f"Experiment {name!r}: no trial finished (see `deepscope sweep status {store}`).")
    outcome = module.analyse(frame, spec, store)
    payload = _payload(module, spec, budget, store, frame, outcome)
    _write_page(out, module, payload, outcome)
    return payload


def _payload(module: ModuleType, spec, budget: str, store: Path, frame, outcome: Outcome) -> dict[str, Any]:
    import deepscope

    return {
        "generator": "deepscope",
        "experiment": module.NAME,
        "title": module.TITLE,
        "claim": module.CLAIM,
        "references": list(module.REFERENCES),
        "budget": budget,
        "protocol": module.protocol(spec),
        "store": store.name,
        "models": len(frame),
        "deepscope_version": deepscope.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "verdict": outcome.verdict.to_dict(),
        "numbers": outcome.numbers,
        "tables": [{"caption": c, "columns": cols, "rows": rows} for c, cols, rows in outcome.tables],
        "notes": outcome.notes,
        "spec": spec,
    }


def _escape(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _table(caption: str, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> str:
    head = "".join(f"<th>{_escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_escape(format_value(row.get(c), 3))}</td>" for c in columns) + "</tr>" for row in rows
    )
    return f"<table><caption>{_escape(caption)}</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _write_page(out: Path, module: ModuleType, payload: dict[str, Any], outcome: Outcome) -> None:
    from deepscope.report import OutputUnit
    from deepscope.sweep._report_text import page

    verdict = outcome.verdict
    word = {True: "held", False: "did not hold", None: "inconclusive at this budget"}[verdict.held]
    p_text = "" if verdict.p_value is None else f", p = {verdict.p_value:.3g}"
    header = {
        "name": f"{module.TITLE} — the claim {word}",
        "description": module.CLAIM,
        "store": payload["store"],
        "deepscope_version": payload["deepscope_version"],
        "created": payload["created"],
    }
    figures = "".join(
        f"<figure>{svg}<figcaption>{_escape(caption)}</figcaption></figure>" for svg, caption in outcome.figures
    )
    tables = "".join(_table(c, cols, rows) for c, cols, rows in outcome.tables)
    notes = "".join(f"<p>{_escape(n)}</p>" for n in outcome.notes)
    sections = [
        ("claim", "Claim", _escape("; ".join(module.REFERENCES)), f"<p>{_escape(module.CLAIM)}</p>"),
        (
            "protocol",
            "Protocol",
            _escape(f"budget {payload['budget']}, {payload['models']} runs"),
            f"<p>{_escape(payload['protocol'])}</p>",
        ),
        (
            "verdict",
            f"Verdict: {word}",
            _escape(f"{verdict.test}{p_text}, α = {verdict.alpha}"),
            f"<p>{_escape(verdict.detail)}</p>",
        ),
        ("figures", "Figures", "", figures),
        ("numbers", "Numbers", "mean ± standard error over seeds", tables + notes),
    ]
    text = json.dumps(to_jsonable(payload), indent=2, allow_nan=False) + "\n"
    files = {f"{module.NAME}.json": text}
    if outcome.figures:  # the headline figure on its own, for READMEs and slides
        files[f"{module.NAME}.svg"] = outcome.figures[0][0]
    files[f"{module.NAME}.html"] = page(header, sections, kind="experiment")
    with OutputUnit(out, f"experiment-{module.NAME}") as unit:
        unit.commit(files)
