"""Result: the frozen base class every analysis returns.

A result is a frozen dataclass. It serialises itself (``to_dict``, ``to_json``), shows itself
as a table (``to_frame`` with pandas when installed, ``_repr_html_`` in Jupyter) and draws its
own figure (``plot`` returns a matplotlib Figure and never shows a window). Its one-line headline
is :meth:`Result.summary`, under that one name for every family.

Subclasses declare their fields with ``@dataclass(frozen=True)`` and may override
:meth:`Result.rows` (the table view), :meth:`Result.summary` (the headline) and :meth:`Result.plot`.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class TraceResult(Result):
    ...     trace: float
    ...     standard_error: float
    >>> TraceResult(trace=3.0, standard_error=0.1).to_dict()
    {'trace': 3.0, 'standard_error': 0.1}
    >>> TraceResult(trace=3.0, standard_error=0.1).summary()
    'TraceResult: trace 3, standard_error 0.1.'
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
from typing import Any

import numpy as np
import torch

from deepscope.errors import DeepscopeError

__all__ = ["Result", "to_jsonable"]


def to_jsonable(value: Any) -> Any:
    """Convert tensors, arrays, numpy scalars, nested results and containers to JSON-ready values.

    Non-finite floats become the strings ``"nan"``, ``"inf"`` or ``"-inf"`` so that the output is
    strict JSON (``json.dumps(..., allow_nan=False)`` succeeds).
    """
    if isinstance(value, Result):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.is_complex():
            value = torch.view_as_real(value)
        return to_jsonable(value.tolist())
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if isinstance(value, (bool, int, str)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, torch.dtype | torch.device):
        return str(value)
    return repr(value)


@dataclasses.dataclass(frozen=True)
class Result:
    """Base class of every analysis result (a frozen dataclass)."""

    def to_dict(self) -> dict[str, Any]:
        """All fields as plain Python values (tensors and arrays become nested lists)."""
        return {f.name: to_jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def to_json(self, indent: int | None = 2) -> str:
        """The result as strict JSON text (non-finite floats spelled as strings)."""
        return json.dumps({"type": type(self).__name__, **self.to_dict()}, indent=indent, allow_nan=False)

    def rows(self) -> list[dict[str, Any]]:
        """The table view: a list of rows (dicts). By default one row of the scalar fields."""
        return [self._scalar_fields()]

    def _scalar_fields(self) -> dict[str, Any]:
        row: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (bool, int, float, str)) or value is None:
                row[f.name] = value
            elif isinstance(value, torch.Tensor) and value.numel() == 1:
                row[f.name] = value.item()
        return row

    def summary(self) -> str:
        """The result's headline: one plain sentence (what the report shows under a section's title).

        This is the one name for it in every family. Results with something to say override it (a
        bound says its value and whether it is vacuous); the base lists the scalar fields, e.g.
        ``"TraceResult: trace 3, standard_error 0.1."``.

        Older names of the same text stay as aliases for one release (removed in 0.2):
        ``GapEstimate.sentence()``, ``ModelSummary.sentence()`` and ``RandomisationCheck.verdict``.
        """
        fields = [(name, value) for name, value in self._scalar_fields().items() if value is not None and value != ""]
        if not fields:
            return f"{type(self).__name__}."
        text = f"{type(self).__name__}: " + ", ".join(f"{name} {format_value(value)}" for name, value in fields)
        return text if text.endswith(".") else text + "."  # a note that ends a sentence gets no second period

    def to_frame(self):  # -> pandas.DataFrame
        """The table view as a pandas DataFrame (pandas is an optional dependency)."""
        try:
            import pandas as pd
        except ImportError as error:  # pragma: no cover - depends on the environment
            raise DeepscopeError("to_frame() needs pandas; install it with: pip install pandas") from error
        return pd.DataFrame(self.rows())

    def _repr_html_(self) -> str:
        """An HTML table for Jupyter; returns the string, never displays."""
        rows = self.rows()
        title = html.escape(type(self).__name__)
        if not rows:
            return f"<div><b>{title}</b> (empty)</div>"
        columns: list[str] = []
        for row in rows:
            columns.extend(c for c in row if c not in columns)
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(format_value(row.get(c)))}</td>" for c in columns) + "</tr>"
            for row in rows
        )
        return f"<div><b>{title}</b><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"

    def plot(self, ax=None):  # -> matplotlib.figure.Figure
        """Draw the result and return the matplotlib Figure (never shows a window).

        Subclasses with something worth drawing override this; the base class has no figure.
        """
        raise DeepscopeError(f"{type(self).__name__} has no figure; use rows() or to_frame() for its table.")


def format_value(value: Any, digits: int = 4) -> str:
    """Format a table cell: floats with ``digits`` significant digits, the rest with str()."""
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.{digits}g}"
    if value is None:
        return ""
    return str(value)
