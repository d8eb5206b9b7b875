"""Running registered analyses on a trained trial model and turning their results into metrics.

Any analysis registered with ``@analysis`` (see :mod:`deepscope.registry`) can be named in a sweep
spec with its keyword options. What it receives depends on its registration's ``takes``:

* ``"problem"``: a :class:`deepscope.Problem` of the trained model, the trial's training data
  (after subsampling and label noise) and its test split, with ``init_state`` the weights at
  initialisation (so distance-from-initialisation measures work);
* ``"model_inputs"``: the trained model and the first ``inputs`` test examples;
* ``"model"``: the trained model.

Its result becomes metrics named ``"<analysis>.<field>"``: for a table whose rows have ``name``
and ``value`` (the measures table) one metric per row; otherwise every finite scalar field of
``result.to_dict()``, nested mappings joined with dots. A field ``X_standard_error`` is the
standard error of ``X``; a bare ``standard_error`` belongs to the result's first float field
(e.g. ``hessian_trace.trace``). ``"gap"`` is accepted as a name for clarity: every trial records
its gap anyway.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deepscope.problem import Problem

__all__ = ["check_analysis", "run_analysis", "flatten_result", "Metric"]

Metric = tuple[float, float | None]  # (value, standard error or None)
_BUILTIN = ("gap",)


def _registry() -> dict[str, Any]:
    """The registered analyses (only the analysis packages are imported: a trial on a worker needs
    neither the report, the CLI, the sweep nor the gallery)."""
    from deepscope.registry import load_all_analyses

    return load_all_analyses()


def check_analysis(name: Any, options: dict[str, Any]) -> list[tuple[str, str]]:
    """Problems with one ``analyses`` entry, as ``(".name"|".options.<key>", message)`` pairs."""
    if not isinstance(name, str):
        return [(".name", f"expected the name of a registered analysis, got {name!r}")]
    if name in _BUILTIN:
        return [(".options", "'gap' takes no options")] if options else []
    registry = _registry()
    if name not in registry:
        known = ", ".join(sorted(n for n, s in registry.items() if s.takes == "problem") + list(_BUILTIN))
        return [
            (
                ".name",
                f"unknown analysis {name!r} (analyses of a trained model: {known}; others are listed by deepscope.registry.ANALYSES)",
            )
        ]
    spec = registry[name]
    parameters = list(inspect.signature(spec.function).parameters.values())
    skip = 2 if spec.takes == "model_inputs" else 1
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return []
    accepted = [p.name for p in parameters[skip:] if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return [
        (f".options.{key}", f"not an option of {name} (expected one of {', '.join(accepted)})")
        for key in options
        if key not in accepted
    ]


def run_analysis(entry: Mapping[str, Any], problem: Problem, test_inputs: Any) -> dict[str, Metric]:
    """Run one spec ``analyses`` entry and return its metrics."""
    name = entry["name"]
    if name in _BUILTIN:
        return {}
    spec = _registry()[name]
    options = dict(entry.get("options", {}))
    if spec.takes == "problem":
        result = spec.function(problem, **options)
    elif spec.takes == "model_inputs":
        result = spec.function(problem.model, test_inputs[: entry.get("inputs", 256)], **options)
    else:
        result = spec.function(problem.model, **options)
    return flatten_result(name, result)


def flatten_result(prefix: str, result: Any) -> dict[str, Metric]:
    """The finite scalar metrics of a result (see the module docstring for the naming rules)."""
    rows = result.rows() if hasattr(result, "rows") else None
    if rows and all(isinstance(r, Mapping) and "name" in r and "value" in r for r in rows):
        out = {}
        for row in rows:
            value = _scalar(row["value"])
            if value is not None:
                error = _scalar(row.get("standard_error"))
                out[f"{prefix}.{row['name']}"] = (value, error)
        return out
    if isinstance(result, (int, float)) and not isinstance(result, bool):
        value = _scalar(result)
        return {prefix: (value, None)} if value is not None else {}
    data = result.to_dict() if hasattr(result, "to_dict") else result
    if not isinstance(data, Mapping):
        return {}
    return _flatten_mapping(prefix, data)


def _flatten_mapping(prefix: str, data: Mapping[str, Any]) -> dict[str, Metric]:
    out: dict[str, Metric] = {}
    first_float = next((k for k, v in data.items() if isinstance(v, float)), None)
    for key, raw in data.items():
        if key.endswith("standard_error"):
            continue
        if isinstance(raw, Mapping):
            out.update(_flatten_mapping(f"{prefix}.{key}", raw))
            continue
        value = _scalar(raw)
        if value is None:
            continue
        error = _scalar(data.get(f"{key}_standard_error"))
        if error is None and key == first_float:
            error = _scalar(data.get("standard_error"))
        out[f"{prefix}.{key}"] = (value, error)
    return out


def _scalar(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)) and math.isfinite(float(value)):
        return float(value)
    return None
