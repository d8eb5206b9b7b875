"""audit(): one call from a model and its data to ``report.html`` and ``results.json``.

Example:
    >>> import torch, tempfile
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    >>> train = (torch.randn(32, 4), torch.randint(0, 3, (32,)))
    >>> test = (torch.randn(16, 4), torch.randint(0, 3, (16,)))
    >>> paths = audit(net, (train, test), out=tempfile.mkdtemp())  # doctest: +SKIP
    >>> paths.html.name  # doctest: +SKIP
    'report.html'
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from deepscope._validation import check_choice, check_int
from deepscope.data._base import DatasetSplits
from deepscope.errors import invalid_parameter
from deepscope.problem import Problem
from deepscope.report.html import ReportPaths, write_report
from deepscope.report.sections import AuditContext

__all__ = ["audit"]


def audit(
    model: nn.Module,
    data: DatasetSplits | tuple[Any, Any],
    *,
    out: str | os.PathLike[str],
    sections: Sequence[str] | None = None,
    budget: str = "quick",
    history: Any = None,
    learning_rate: float | None = None,
    loss: str | Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    model_name: str | None = None,
    overwrite: bool = False,
    progress: bool = False,
    seed: int = 0,
    init_state: Mapping[str, torch.Tensor] | None = None,
) -> ReportPaths:
    """Audit ``model`` on ``data``: run the report sections and write report.html + results.json into ``out``.

    The model is never changed: every analysis runs under :func:`deepscope.guard.model_guard`.
    ``out`` is checked to be writable before any analysis runs, and report.html + results.json are
    switched in together: after a crash or a full disk ``out`` holds the previous complete pair or
    the new one, never a mix (see :mod:`deepscope.report._write`).

    Args:
        model: the trained ``nn.Module``.
        data: a :class:`~deepscope.data.DatasetSplits` (from ``deepscope.datasets.load``) or a pair
            ``(train, test)`` where each is ``(X, y)``, a torch Dataset or a DataLoader (``test`` may be None).
        out: output directory.
        sections: section keys to run (default: all registered), e.g. ``["model_card", "curvature"]``.
        budget: "quick" (seconds, for demos and tests) or "full".
        history: the training history (``TrainingRun.history``), for the training section.
        learning_rate: the training learning rate, when known (edge-of-stability plots).
        loss: loss name or callable; default from the dataset's task ("cross_entropy" for pairs).
        model_name: label for the report header (default: the model's class name).
        overwrite: replace report files in ``out`` that deepscope did not write.
        progress: show a progress bar on stderr.
        seed: seed for every stochastic estimate.
        init_state: the model's state_dict at initialisation (``TrainingRun.init_state``), for
            distance-from-initialisation measures.

    Returns:
        ``ReportPaths(html, json)``.
    """
    if not isinstance(model, nn.Module):
        raise invalid_parameter("model", "audit", "a torch.nn.Module", model)
    check_choice(budget, "budget", "audit", ("quick", "full"))
    seed = check_int(seed, "seed", "audit", minimum=0)
    if learning_rate is not None and not (isinstance(learning_rate, (int, float)) and learning_rate > 0):
        raise invalid_parameter("learning_rate", "audit", "a float > 0 or None", learning_rate)
    if model_name is not None and not isinstance(model_name, str):
        raise invalid_parameter("model_name", "audit", "a string or None", model_name)
    options: dict[str, Any] = {"init_state": init_state}
    if loss is not None:
        options["loss"] = loss
    if isinstance(data, DatasetSplits):
        problem = Problem.from_dataset(model, data, **options)
        dataset = data
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        problem = Problem(model, data[0], data[1], **options)
        dataset = None
    else:
        raise invalid_parameter(
            "data", "audit", "a DatasetSplits (deepscope.datasets.load) or a pair (train, test)", data
        )
    context = AuditContext(
        problem=problem,
        dataset=dataset,
        history=history,
        learning_rate=None if learning_rate is None else float(learning_rate),
        budget=budget,
        seed=seed,
        model_name=model_name or type(model).__name__,
    )
    return write_report(context, out, sections=sections, overwrite=overwrite, progress=progress)
