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

from deepscope._finite import describe_nonfinite, nonfinite_tensors
from deepscope._outputs import OutputFn
from deepscope._validation import check_choice, check_float, check_seed
from deepscope.data._base import DatasetSplits
from deepscope.errors import NonFiniteError, invalid_parameter
from deepscope.problem import DataSource, Problem, resolve_loss
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
    output_fn: OutputFn | None = None,
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
        output_fn: for a model returning a tuple, dict or HuggingFace ``ModelOutput``, picks the
            scores every section analyses (e.g. ``lambda out: out.logits``); see :class:`Problem`.

    Returns:
        ``ReportPaths(html, json)``.

    Raises:
        NonFiniteError: the model's weights are NaN or infinite. The report is written first: its
            model card describes the model and names the non-finite layers, and every other section
            shows the refusal as its error; the message names the layer and the report's path.
    """
    if not isinstance(model, nn.Module):
        raise invalid_parameter("model", "audit", "a torch.nn.Module", model)
    check_choice(budget, "budget", "audit", ("quick", "full"))
    seed = check_seed(seed, "audit")
    if learning_rate is not None:  # inf passed a plain "> 0" test
        learning_rate = check_float(learning_rate, "learning_rate", "audit", minimum=0.0, strict_minimum=True)
    if model_name is not None and not isinstance(model_name, str):
        raise invalid_parameter("model_name", "audit", "a string or None", model_name)
    options: dict[str, Any] = {"init_state": init_state}
    if output_fn is not None:
        options["output_fn"] = output_fn
    if loss is not None:
        options["loss"] = loss
    if isinstance(data, DatasetSplits):
        dataset = data
        options.setdefault("loss", "cross_entropy" if data.task == "classification" else "mse")
        train, test = data.train, data.test if len(data.x_test) else None
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        dataset, (train, test) = None, data
    else:
        raise invalid_parameter(
            "data", "audit", "a DatasetSplits (deepscope.datasets.load) or a pair (train, test)", data
        )
    refusal = None
    try:
        problem: Any = Problem(model, train, test, **options)
    except NonFiniteError as error:  # the model card can still describe the model and show where
        refusal = error
        problem = _RefusedProblem(model, train, test, options.get("loss", "cross_entropy"), error)
    context = AuditContext(
        problem=problem,
        dataset=dataset,
        history=history,
        learning_rate=None if learning_rate is None else float(learning_rate),
        budget=budget,
        seed=seed,
        model_name=model_name or type(model).__name__,
    )
    paths = write_report(context, out, sections=sections, overwrite=overwrite, progress=progress)
    if refusal is not None:
        found = describe_nonfinite(model, nonfinite_tensors(model))
        raise NonFiniteError(
            f"audit: the model's weights are not finite: {found}. The report ({paths.html}) was written: its model "
            "card shows where, and every analysis refused the model (a diverged training run leaves NaN weights: "
            "lower the learning rate, or load a finite checkpoint)."
        ) from refusal
    return paths


class _RefusedProblem:
    """Stands in for the Problem that refused a model with non-finite weights, so the report is still written.

    It holds what the model card and the report's header read — the ``model``, the ``train`` and
    ``test`` data sources and the ``loss_name`` — and nothing else: any other use (every analysis
    needs the Problem's evaluation, tensors or class count) raises the refusal again, so each
    section shows it as its error. Analyses that receive ``model`` directly refuse it themselves.
    """

    def __init__(self, model: nn.Module, train: Any, test: Any, loss: Any, refusal: NonFiniteError) -> None:
        self.model = model
        self.train = DataSource(train, name="train")
        self.test = None if test is None else DataSource(test, name="test")
        self.loss_name = resolve_loss(loss)[0]
        self._refusal = str(refusal)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "_refusal":  # copy/pickle probes: plain attribute semantics
            raise AttributeError(name)
        raise NonFiniteError(self._refusal)
