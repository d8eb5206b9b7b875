"""The sweep report: one self-contained ``sweep.html`` and one ``sweep.json`` for a sweep store.

``write_sweep_report(store, out)`` reads the store (it works while a run is going on, and on a
store where nothing has finished yet) and writes:

* **Spec**: the sweep spec as TOML;
* **Progress**: trials done / failed / pending / running, timings, how many models reached the
  training stop rule, and every failed trial with its error;
* **Distributions**: small-multiple histograms of the gap, train and test error, epochs and each
  measure;
* **Measure ranking**: Kendall τ, granulated Ψ (with bootstrap standard errors and 90% intervals),
  the CMI score and the per-hyperparameter ψ of every measure, sorted by |τ|
  (:mod:`deepscope.sweep.ranking`), a forest plot of τ and Ψ, and the CMI table;
* **Measures vs the gap**: scatter plots of the top measures and of the headline measures of
  Jiang et al. 2020 (sharpness / PAC-Bayes flatness, spectral-norm products);
* **Compared with Jiang et al. 2020**: paragraphs generated from the numbers (see
  :mod:`deepscope.sweep._report_text`).

Like the audit report (:mod:`deepscope.report.html`) the page has inline CSS and inline SVG, no
script and no URL, so it opens offline; both files carry the ``generator: deepscope`` marker, files
deepscope did not write are replaced only with ``overwrite=True``, and the pair is written as one
unit (:class:`deepscope.report.OutputUnit`: a complete generation, fsynced, switched in by one
atomic rename), so a reader never sees a new ``sweep.json`` next to an old ``sweep.html``.

Example:
    >>> paths = write_sweep_report("gen-small.db", "gen-report")   # doctest: +SKIP
"""

from __future__ import annotations

import datetime
import html
import json
import math
import os
from pathlib import Path
from typing import Any

from deepscope.errors import invalid_parameter
from deepscope.report import OutputUnit, check_overwrite
from deepscope.results import format_value, to_jsonable
from deepscope.sweep import _report_figures as figures
from deepscope.sweep._report_text import FLATNESS_MEASURES, SPECTRAL_PRODUCTS, compare_with_jiang, format_spec, page
from deepscope.sweep.ranking import MEASURE_PREFIX, SweepRanking, rank_population

__all__ = ["write_sweep_report", "HTML_NAME", "JSON_NAME"]

HTML_NAME, JSON_NAME = "sweep.html", "sweep.json"
_OUTCOMES = ("gap", "train_error", "test_error", "epochs_run")
_TOP_SCATTERS = 6


def write_sweep_report(
    store: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    bootstrap: int = 200,
    seed: int = 0,
) -> list[Path]:
    """Write ``sweep.html`` and ``sweep.json`` for the sweep in ``store`` into the directory ``out``.

    Args:
        store: the sweep's SQLite file (``deepscope sweep run ... --store``).
        out: output directory (created if missing).
        overwrite: replace a sweep.html/sweep.json that deepscope did not write (files an earlier
            deepscope run wrote are always replaced).
        bootstrap: resamples of the models for the intervals of τ and Ψ (0: none).
        seed: seed of the bootstrap.

    Returns:
        The paths written: ``[out/sweep.html, out/sweep.json]``.

    Raises:
        StoreError: ``store`` is missing or not a sweep store.
        DeepscopeError: ``out`` holds files deepscope did not write (and not ``overwrite``), or
            cannot be written (nothing is changed then).
    """
    from deepscope.sweep.runner import load, status
    from deepscope.sweep.store import SweepStore

    owner = "write_sweep_report"
    if not isinstance(store, (str, os.PathLike)):
        raise invalid_parameter("store", owner, "the path of a sweep store", store)
    if not isinstance(out, (str, os.PathLike)):
        raise invalid_parameter("out", owner, "a directory path", out)
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, int) or bootstrap < 0:
        raise invalid_parameter("bootstrap", owner, "an int >= 0", bootstrap)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise invalid_parameter("seed", owner, "an int", seed)
    with SweepStore(store, create=False) as sweep:  # a missing or foreign file is a StoreError here
        spec, trials = sweep.spec() or {}, sweep.trials()
    progress = status(store)
    frame = load(store)
    out = Path(out)
    html_path, json_path = out / HTML_NAME, out / JSON_NAME
    check_overwrite(out, (html_path, json_path), overwrite)
    with OutputUnit(out, "sweep-report") as unit:  # writable? (before the ranking work) and one writer at a time
        axes = [axis for axis in spec.get("search", {}).get("grid", {}) if axis in frame.columns]
        ranking = rank_population(frame, axes, bootstrap=bootstrap, seed=seed)
        payload, page = _build(Path(store), spec, trials, progress, frame, ranking)
        unit.commit({JSON_NAME: payload, HTML_NAME: page})  # the HTML last
    return [html_path, json_path]


# ----------------------------------------------------------------------------------- content
def _progress_facts(spec: dict[str, Any], trials: list[dict[str, Any]], progress: Any) -> dict[str, Any]:
    done = [t for t in trials if t["status"] == "done"]
    started = [t["started"] for t in trials if t["started"]]
    finished = [t["finished"] for t in trials if t["finished"]]
    stop_loss = spec.get("train", {}).get("stop_loss")
    return {
        "total": progress.total,
        "done": progress.done,
        "failed": progress.failed,
        "pending": progress.pending,
        "running": progress.running,
        "interrupted": progress.interrupted,
        "mean_trial_seconds": progress.mean_trial_seconds,
        "train_seconds": sum(t["train_seconds"] or 0.0 for t in done),
        "analysis_seconds": sum(t["analysis_seconds"] or 0.0 for t in done),
        "wall_seconds": (max(finished) - min(started)) if started and finished else math.nan,
        "eta_seconds": progress.eta_seconds,
        "stop_loss": stop_loss,
        "reached_stop_rule": sum(t["stopped_by"] == "stop_loss" for t in done),
        "stopped_by_max_epochs": sum(t["stopped_by"] == "max_epochs" for t in done),
    }


def _failures(spec: dict[str, Any], trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    axes = list(spec.get("search", {}).get("grid", {}))
    rows = []
    for trial in trials:
        if trial["status"] != "failed":
            continue
        config = json.loads(trial["config_json"])
        settings = {path: config.get(path.split(".")[0], {}).get(path.split(".", 1)[1]) for path in axes}
        settings["seed"] = config.get("seed")
        rows.append(
            {
                "key": trial["key"],
                "settings": ", ".join(f"{k}={v}" for k, v in settings.items()),
                "attempts": trial["attempts"],
                "error": trial["error"] or "",
            }
        )
    return rows


def _distributions(frame: Any) -> dict[str, list[float]]:
    columns = [c for c in _OUTCOMES if c in frame.columns]
    columns += sorted(c for c in frame.columns if c.startswith(MEASURE_PREFIX) and not c.endswith(".stderr"))
    return {c: [float(v) for v in frame[c].astype(float).tolist()] for c in columns}


def _summary(values: list[float]) -> dict[str, float]:
    finite = sorted(v for v in values if math.isfinite(v))
    if not finite:
        return {"count": 0}
    mean = sum(finite) / len(finite)
    return {
        "count": len(finite),
        "mean": mean,
        "min": finite[0],
        "median": finite[len(finite) // 2]
        if len(finite) % 2
        else (finite[len(finite) // 2 - 1] + finite[len(finite) // 2]) / 2,
        "max": finite[-1],
    }


def _scatter_names(ranking: SweepRanking) -> list[str]:
    """The top measures by |τ|, then the paper's headline measures present in the sweep.

    Headline measures: the two strongest sharpness-based ones (names with "sharpness", "pac_bayes",
    "pacbayes" or "sigma", but not the spectral-norm PAC-Bayes bounds), the PAC-Bayes and sharpness
    flatness measures, and the spectral-norm products.
    """
    ranked = [r["measure"] for r in ranking.rows() if math.isfinite(r["kendall_tau"])]
    names = ranked[:_TOP_SCATTERS]
    words = ("sharpness", "pac_bayes", "pacbayes", "sigma")
    sharp = [n for n in ranked if any(w in n for w in words) and "spectral" not in n]
    headline = [n for n in ranked if n in FLATNESS_MEASURES] + [n for n in ranked if n in SPECTRAL_PRODUCTS]
    for name in sharp[:2] + headline:
        if name not in names:
            names.append(name)
    return names


def _build(store: Path, spec, trials, progress, frame, ranking: SweepRanking) -> tuple[str, str]:
    import deepscope

    facts = _progress_facts(spec, trials, progress)
    failures = _failures(spec, trials)
    distributions = _distributions(frame)
    comparison = compare_with_jiang(ranking, facts)
    header = {
        "name": spec.get("name", store.stem),
        "description": spec.get("description", ""),
        "store": store.name,
        "deepscope_version": deepscope.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
    }
    payload = {
        "generator": "deepscope",
        **header,
        "spec": spec,
        "progress": facts,
        "failures": failures,
        "distributions": {name: _summary(values) for name, values in distributions.items()},
        "ranking": ranking.to_dict(),
        "comparison_with_jiang_2020": comparison,
    }
    text = json.dumps(to_jsonable(payload), indent=2, allow_nan=False) + "\n"
    sections = [
        ("spec", "Spec", _escape(f"{len(trials)} trials."), f"<pre>{_escape(format_spec(spec))}</pre>"),
        ("progress", "Progress and failures", _progress_summary(facts), _progress_body(facts, failures)),
        ("distributions", "Distributions", *_distributions_body(distributions)),
        ("ranking", "Measure ranking", *_ranking_body(ranking)),
        ("scatter", "Measures against the gap", *_scatter_body(frame, ranking)),
        ("jiang", "Compared with Jiang et al. 2020", "", "".join(f"<p>{_escape(p)}</p>" for p in comparison)),
    ]
    return text, page(header, sections)


# ----------------------------------------------------------------------------------- rendering
def _escape(value: Any) -> str:
    return html.escape(str(value), quote=True)


_LABELS = {"kendall_tau": "τ", "kendall_tau_se": "τ se", "psi": "Ψ", "psi_se": "Ψ se", "cmi": "CMI", "": "S = ∅"}


def _table(columns: list[str], rows: list[dict[str, Any]], caption: str = "") -> str:
    labels = [_LABELS.get(c, "ψ " + c[4:] if c.startswith("psi_") else c) for c in columns]
    head = "".join(f"<th>{_escape(label)}</th>" for label in labels)
    body = []
    for row in rows:
        cells = []
        for column in columns:
            value = row.get(column)
            numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
            cells.append(f"<td{' class=num' if numeric else ''}>{_escape(format_value(value, 3))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    caption = f"<caption>{_escape(caption)}</caption>" if caption else ""
    return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _seconds(value: float) -> str:
    if not math.isfinite(value):
        return "unknown"
    return f"{value / 60:.1f} min" if value >= 90 else f"{value:.1f} s"


def _progress_summary(facts: dict[str, Any]) -> str:
    text = f"{facts['done']} of {facts['total']} trials done, {facts['failed']} failed, {facts['pending']} pending"
    if facts["running"] or facts["interrupted"]:
        text += f", {facts['running']} running, {facts['interrupted']} interrupted"
    return _escape(text + ".")


def _progress_body(facts: dict[str, Any], failures: list[dict[str, Any]]) -> str:
    if facts["stop_loss"] is None:
        rule = "no stop rule set: every model trained for max_epochs"
    else:
        rule = (
            f"{facts['reached_stop_rule']} of {facts['done']} finished models reached the train cross-entropy "
            f"{facts['stop_loss']}; {facts['stopped_by_max_epochs']} stopped at max_epochs"
        )
    items = [
        ("Stop rule", rule),
        ("Mean trial time", _seconds(facts["mean_trial_seconds"])),
        ("Training / analyses", f"{_seconds(facts['train_seconds'])} / {_seconds(facts['analysis_seconds'])}"),
        ("First start to last finish", _seconds(facts["wall_seconds"])),
    ]
    if facts["pending"] or facts["running"] or facts["interrupted"]:
        items.append(("Time left (estimate)", _seconds(facts["eta_seconds"])))
    body = '<dl class="facts">' + "".join(f"<dt>{_escape(k)}</dt><dd>{_escape(v)}</dd>" for k, v in items) + "</dl>"
    if not failures:
        return body + "<p>No trial failed.</p>"
    body += _table(["key", "settings", "attempts"], failures, caption=f"{len(failures)} failed trials")
    for failure in failures:
        first = failure["error"].splitlines()[0] if failure["error"] else "no error text"
        body += (
            f'<div class="error-box"><p><strong>{_escape(failure["key"])}</strong> '
            f"({_escape(failure['settings'])}): {_escape(first)}</p>"
            f"<details><summary>Error</summary><pre>{_escape(failure['error'])}</pre></details></div>"
        )
    return body


def _distributions_body(distributions: dict[str, list[float]]) -> tuple[str, str]:
    if not distributions or not any(distributions.values()):
        return "No finished trial yet.", ""
    summary = f"{len(distributions)} metrics over {len(next(iter(distributions.values())))} finished models."
    caption = "Histograms over the finished models (NaN values left out; n counts the finite ones)."
    return _escape(summary), _figure(figures.histograms_svg(distributions), caption)


def _figure(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{_escape(caption)}</figcaption></figure>"


def _ranking_body(ranking: SweepRanking) -> tuple[str, str]:
    notes = "".join(f'<p class="note">{_escape(n)}</p>' for n in ranking.notes)
    if not ranking.rows():
        return _escape(ranking.notes[0] if ranking.notes else "Nothing to rank."), notes
    axes = [f"psi_{axis}" for axis in ranking.hyperparameters]
    rows = []
    for row in ranking.rows():
        shown = dict(row)
        shown["n (dropped)"] = f"{row['models_used']} ({row['models_dropped']})"
        shown["τ 90% interval"] = _interval(row["kendall_tau_low"], row["kendall_tau_high"])
        shown["Ψ 90% interval"] = _interval(row["psi_low"], row["psi_high"])
        rows.append(shown)
    columns = ["measure", "family", "n (dropped)", "kendall_tau", "kendall_tau_se", "τ 90% interval"]
    columns += ["psi", "psi_se", "Ψ 90% interval", "cmi", *axes]
    best = ranking.rows()[0]
    summary = (
        f"{len(rows)} measures ranked over {ranking.models} models; the strongest is {best['measure']} "
        f"(τ = {best['kendall_tau']:.2f}, Ψ = {format_value(best['psi'], 2)})."
    )
    caption = (
        f"Sorted by |τ|. se and intervals: bootstrap over models (B = {ranking.bootstrap}, seed {ranking.seed}; "
        "Ψ's bootstrap resamples whole models). Ψ averages ψ over the searched hyperparameters "
        f"({', '.join(ranking.hyperparameters) or 'none varied'})."
    )
    body = notes + _table(columns, rows, caption)
    body += _figure(figures.ranking_svg(ranking.rows()), "τ (blue) and Ψ (orange) of each measure, 90% intervals.")
    sets = sorted({s for parts in ranking.cmi_table.values() for s in parts}, key=lambda s: (s.count(",") + bool(s), s))
    cmi_rows = [
        {"measure": r["measure"], "score (min)": r["cmi"], **ranking.cmi_table.get(r["measure"], {})} for r in rows
    ]
    cmi_caption = (
        "Conditional mutual information I(V_μ; V_g | U_S) / H(V_g | U_S) for each set S of at most two "
        "hyperparameters (∅: no conditioning); the score is the minimum over S (Jiang et al. 2020, Sec. 5)."
    )
    body += _table(["measure", "score (min)", *sets], cmi_rows, cmi_caption)
    return _escape(summary), body


def _interval(low: float, high: float) -> str:
    return f"[{low:.2f}, {high:.2f}]" if math.isfinite(low) and math.isfinite(high) else ""


def _scatter_body(frame: Any, ranking: SweepRanking) -> tuple[str, str]:
    names = _scatter_names(ranking)
    if not names:
        return "No ranked measure to draw.", ""
    taus = {r["measure"]: r["kendall_tau"] for r in ranking.rows()}
    panels = [(n, frame[MEASURE_PREFIX + n].astype(float).tolist(), taus[n]) for n in names]
    colour = ranking.hyperparameters[0] if ranking.hyperparameters else None
    colour_by = (colour, frame[colour].tolist()) if colour else None
    caption = (
        "Each point is a model; colour: " + (colour or "none") + ". Top measures by |τ|, then the headline measures."
    )
    return _escape(f"{len(names)} measures drawn against the gap."), _figure(
        figures.scatter_svg(panels, frame["gap"].astype(float).tolist(), colour_by), caption
    )
