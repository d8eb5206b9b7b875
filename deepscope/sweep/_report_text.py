"""The text of the sweep report: the spec as TOML, the comparison with Jiang et al. 2020, the page shell.

The comparison is generated from the ranking, never written in advance: it states what the paper
found and whether this population agrees, disagrees, or cannot tell (an interval covering zero).
Jiang et al. 2020 ("Fantastic Generalization Measures and Where to Find Them", ICLR 2020) trained
over 10,000 convolutional networks on CIFAR-10 and SVHN and found (i) sharpness-based measures,
above all the PAC-Bayes flatness measures (1/σ'², 1/σ²), among the most predictive of the gap,
and (ii) spectral-norm products (the log product of the layers' spectral norms and the bounds
built on them) *negatively* correlated with the gap, against what the bounds suggest.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from deepscope.report import GENERATOR_META
from deepscope.report.page import CSS as _CSS
from deepscope.report.page import escape as _escape
from deepscope.sweep.ranking import SweepRanking

__all__ = ["format_spec", "compare_with_jiang", "page", "FLATNESS_MEASURES", "SPECTRAL_PRODUCTS"]

# The paper's headline measures, by deepscope's names: spectral-norm products, and the flatness measures 1/σ'², 1/σ², 1/α².
SPECTRAL_PRODUCTS = ("log_product_spectral", "log_sum_spectral")
FLATNESS_MEASURES = ("pac_bayes_mag_flatness", "pac_bayes_flatness", "sharpness_flatness")


# ----------------------------------------------------------------------------------- the spec
def _key(name: str) -> str:
    bare = name.replace("_", "").replace("-", "").isalnum()
    return name if bare else json.dumps(name)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Mapping):
        items = [f"{_key(str(k))} = {_value(v)}" for k, v in value.items() if v is not None]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return json.dumps(str(value))


def _table_lines(name: str, table: Mapping[str, Any], header: str) -> list[str]:
    lines = [header]
    nested = []
    for key, value in table.items():
        if value is None:
            lines.append(f"# {_key(key)}: not set")
        elif isinstance(value, Mapping) and value and all(not isinstance(v, Mapping) for v in value.values()):
            nested.append((key, value))
        else:
            lines.append(f"{_key(key)} = {_value(value)}")
    for key, value in nested:
        lines += ["", *_table_lines(f"{name}.{key}", value, f"[{name}.{_key(key)}]")]
    return lines


def format_spec(spec: Mapping[str, Any]) -> str:
    """The (validated) spec as TOML text: top-level keys, then one ``[table]`` per section, then ``[[analyses]]``.

    Unset values (``None``, which TOML cannot spell) are shown as comments.
    """
    if not spec:
        return "# the store holds no spec yet"
    lines: list[str] = []
    tables, arrays = [], []
    for key, value in spec.items():
        if isinstance(value, Mapping):
            tables.append((key, value))
        elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            arrays.append((key, value))
        elif value is None:
            lines.append(f"# {_key(key)}: not set")
        else:
            lines.append(f"{_key(key)} = {_value(value)}")
    for key, value in tables:
        lines += ["", *_table_lines(key, value, f"[{_key(key)}]")]
    for key, entries in arrays:
        for entry in entries:
            lines += ["", f"[[{_key(key)}]]"] + [f"{_key(k)} = {_value(v)}" for k, v in entry.items() if v is not None]
    return "\n".join(lines).strip() + "\n"


# ----------------------------------------------------------------------------------- the comparison
def _fmt(value: float) -> str:
    return f"{value:+.2f}" if math.isfinite(value) else "undefined"


def _with_interval(row: Mapping[str, Any]) -> str:
    text = f"τ = {_fmt(row['kendall_tau'])}"
    if math.isfinite(row["kendall_tau_low"]):
        text += f" (90% interval [{row['kendall_tau_low']:+.2f}, {row['kendall_tau_high']:+.2f}])"
    return text + f", Ψ = {_fmt(row['psi'])}"


def _families(rows: list[dict[str, Any]]) -> str:
    best: dict[str, dict[str, Any]] = {}
    for row in rows:  # rows are sorted by |τ|: the first of a family is its strongest
        best.setdefault(row["family"], row)
    parts = [f"{family} ({row['measure']}, τ = {_fmt(row['kendall_tau'])})" for family, row in best.items()]
    return "Families by their strongest measure (|τ|): " + "; ".join(parts) + "."


def _sharpness(rows: list[dict[str, Any]]) -> str:
    sharp = [(rank, row) for rank, row in enumerate(rows, 1) if row["family"] == "sharpness"]
    if not sharp:
        return (
            'Sharpness and PAC-Bayes flatness: not computed in this sweep (add "sharpness" to the measures\' '
            "families), so the paper's main finding is not tested here."
        )
    rank, row = sharp[0]
    third = math.ceil(len(rows) / 3)
    verdict = "agrees with" if rank <= third else "disagrees with"
    text = (
        f"Sharpness and PAC-Bayes flatness: Jiang et al. found these among the best predictors of the gap. "
        f"Here the strongest of them, {row['measure']}, ranks {rank} of {len(rows)} by |τ| ({_with_interval(row)}); "
        f"this {verdict} the paper (counted as agreeing when in the top third)."
    )
    flat = [r for r in rows if r["measure"] in FLATNESS_MEASURES and math.isfinite(r["kendall_tau"])]
    wrong = [r for r in flat if r["kendall_tau"] < 0]
    if flat and wrong:
        text += (
            " The paper's flatness measures should grow with the gap (τ > 0); here "
            + ", ".join(f"{r['measure']} has τ = {_fmt(r['kendall_tau'])}" for r in wrong)
            + ", the opposite sign."
        )
    elif flat:
        text += " The flatness measures (" + ", ".join(r["measure"] for r in flat) + ") have τ > 0, as in the paper."
    return text


def _spectral(rows: list[dict[str, Any]]) -> str:
    found = [r for r in rows if r["measure"] in SPECTRAL_PRODUCTS]
    if not found:
        return 'Spectral-norm products: not computed in this sweep (the "norm" family), so this is not tested here.'
    sentences = []
    for row in found:
        tau, low, high = row["kendall_tau"], row["kendall_tau_low"], row["kendall_tau_high"]
        if not math.isfinite(tau):
            verdict = "is undefined here (constant over the models)"
        elif math.isfinite(high) and high < 0:
            verdict = "is negatively correlated with the gap, and its whole interval is below zero: this agrees"
        elif math.isfinite(low) and low > 0:
            verdict = "is positively correlated with the gap, its whole interval above zero: this disagrees"
        elif math.isfinite(low):
            sign = "negative" if tau < 0 else "positive"
            verdict = f"has a {sign} τ but its interval covers zero: this population cannot tell"
        else:
            verdict = "is " + ("negatively (agrees)" if tau < 0 else "not negatively (disagrees)") + " correlated"
        sentences.append(f"{row['measure']} ({_with_interval(row)}) {verdict}")
    return (
        "Spectral-norm products: Jiang et al. found them negatively correlated with the gap. Here "
        + "; ".join(sentences)
        + "."
    )


def compare_with_jiang(ranking: SweepRanking, progress: Mapping[str, Any]) -> list[str]:
    """Paragraphs comparing this population's ranking with Jiang et al. 2020, from the numbers alone.

    Args:
        ranking: the population's :class:`~deepscope.sweep.ranking.SweepRanking`.
        progress: the report's progress facts (``done``, ``reached_stop_rule``, ``stop_loss``).
    """
    rows = [r for r in ranking.rows() if math.isfinite(r["kendall_tau"])]
    if not rows:
        return ["No measure could be ranked yet, so there is nothing to compare with Jiang et al. 2020."]
    paragraphs = [_families(rows), _sharpness(rows), _spectral(rows)]
    caveats = [
        f"This population has {ranking.models} models (the paper ranked over 10,000 networks on CIFAR-10 and SVHN); "
        "the bootstrap intervals show how much of this ranking is settled."
    ]
    done, reached = progress.get("done", 0), progress.get("reached_stop_rule", 0)
    if progress.get("stop_loss") is None:
        caveats.append("The paper trains every model to a cross-entropy of 0.01; this sweep set no stop rule.")
    elif reached < done:
        caveats.append(
            f"{reached} of the {done} models reached the cross-entropy stop rule (the paper trains every model "
            f"to it); {done - reached} stopped at max_epochs, less converged, which affects both the gap and the "
            "measures."
        )
    paragraphs.append(" ".join(caveats))
    return paragraphs


# ----------------------------------------------------------------------------------- the page
def page(header: dict[str, Any], sections: list[tuple[str, str, str, str]], kind: str = "sweep report") -> str:
    """The HTML page: a header of facts, a table of contents, one ``<section>`` per (key, title, summary, body).

    ``kind`` names the page in its title ("sweep report"; the theory gallery uses "experiment").

    ``summary`` and ``content`` are HTML already (escaped by the caller); everything else is escaped here.
    """
    facts = [
        ("Sweep" if kind == "sweep report" else kind.capitalize(), header["name"]),
        ("About", header["description"]),
        ("Store", header["store"]),
        ("deepscope", header["deepscope_version"]),
        ("Created", header["created"]),
    ]
    fact_html = "".join(f"<dt>{_escape(k)}</dt><dd>{_escape(v)}</dd>" for k, v in facts if v)
    toc = "".join(f'<li><a href="#section-{key}">{_escape(title)}</a></li>' for key, title, _, _ in sections)
    body = "".join(
        f'<section class="report-section" id="section-{key}"><h2>{_escape(title)}</h2>'
        f'<p class="summary">{summary}</p>{content}</section>'
        for key, title, summary, content in sections
    )
    title = f"deepscope {_escape(kind)}: {_escape(header['name'])}"
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8">{GENERATOR_META}'
        '<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">'
        f"<title>{title}</title><style>{_CSS}</style></head>\n<body><main>"
        f'<header class="report"><h1>{title}</h1><dl class="facts">{fact_html}</dl></header>'
        f'<nav class="toc"><strong>Contents</strong><ol>{toc}</ol></nav>{body}'
        "</main></body></html>\n"
    )
