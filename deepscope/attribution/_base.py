"""The shared shape of every attribution method: the :class:`Attribution` result and private helpers.

Every method has the call shape ``method(model, inputs, target=None, *, baseline=..., ...) -> Attribution``:

* ``inputs``: a float tensor ``(batch, *features)``; NaN/Inf are refused with a DataError. The
  caller's tensor is never modified (methods work on a copy, also with in-place layers). Token
  ids and dicts of tensors (``model(**inputs)``) go to the layer methods
  (``layer_integrated_gradients``, ``layer_gradient_x_activation``, ``attn_lrp``) and ``occlusion``;
  their ``values`` are per token ``(batch, tokens)``. The others refuse them, naming these. A
  tuple of float tensors ``(x1, x2, ...)`` is a model with several inputs, ``model(x1, x2, ...)``:
  saliency, input_x_gradient, integrated_gradients, deeplift and deep_lift_shap take it and return
  a :class:`~deepscope.attribution._multi_input.MultiInputAttribution` (one tensor of values per
  input, diagnostics over all inputs together); the others refuse it, naming these.
* ``target`` (as in Captum): ``None`` (the predicted class of each example), an int (the same class
  for every example), or one class per example — a list of ``batch`` ints or a 1-D tensor of
  ``batch`` ints. Several targets per example need an explicit 2-D form: a tensor or nested list
  of shape ``(n_targets, batch)``, or ``(n_targets, 1)`` (e.g. ``[[0], [2]]``) for the same classes
  for every example; values then get a leading targets dimension ``(n_targets, batch, *features)``.
* ``output_fn``: for models that return a tuple or dict, a callable mapping the raw output to a
  ``(batch, classes)`` tensor (a ``(batch,)`` output is treated as one class).
* ``max_batch``: the largest number of rows passed through the model at once (memory budget);
  long path integrals and many perturbations are chunked to it.

A model with NaN/Inf weights is refused (NonFiniteError naming the layer), and a result whose
values are NaN/Inf (the model overflows on these inputs) is refused rather than returned.
Validation and target resolution live in :mod:`deepscope.attribution._prepare` (re-exported here).

F(x) below always means the selected output ("logit") of the target class.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from deepscope.attribution._prepare import (  # noqa: F401 - re-exported: the methods import them from here
    DEFAULT_MAX_BATCH,
    OutputFn,
    Prepared,
    check_max_batch,
    evaluate_outputs,
    make_forward,
    model_device_dtype,
    prepare,
    prepare_baseline,
    prepare_inputs,
    resolve_targets,
)
from deepscope.errors import NonFiniteError, invalid_parameter
from deepscope.guard import current_guard_report
from deepscope.results import Result

__all__ = ["Attribution", "example_rows"]


def example_rows(
    target: torch.Tensor, diagnostics: dict[str, Any], sums: Callable[[int, int], dict[str, float]]
) -> list[dict[str, Any]]:
    """One row per (target t, example i): the class, ``sums(t, i)`` and each per-example diagnostic.

    ``target`` is ``(batch,)`` or ``(n_targets, batch)``; a diagnostic is per example when it is a
    tensor shaped like ``target``. Shared by :class:`Attribution` and the multi-input result.
    """
    multi = target.dim() == 2
    targets = target if multi else target.unsqueeze(0)
    rows = []
    for t in range(targets.shape[0]):
        for i in range(targets.shape[1]):
            row: dict[str, Any] = {"example": i, "target": int(targets[t, i]), **sums(t, i)}
            for key, value in diagnostics.items():
                if isinstance(value, torch.Tensor) and value.shape == target.shape:
                    row[key] = float((value if multi else value.unsqueeze(0))[t, i])
            rows.append(row)
    return rows


@dataclasses.dataclass(frozen=True)
class Attribution(Result):
    """Attribution scores, shaped like the inputs, with per-example diagnostics.

    Attributes:
        values: ``(batch, *features)``, or ``(n_targets, batch, *features)`` for several targets.
        target: the class each row explains: ``(batch,)`` or ``(n_targets, batch)``.
        method: the method's name (e.g. "integrated_gradients").
        diagnostics: per-example tensors shaped like ``target`` (e.g. ``completeness_error``,
            ``standard_error``, ``steps``) plus scalar notes.
        model_evaluations: number of input rows passed through the model (a backward pass counts
            with its forward pass).
        options: the options the method ran with (JSON-able).
        note: a sentence about train-mode modules switched to eval, if any.
    """

    values: torch.Tensor
    target: torch.Tensor
    method: str
    diagnostics: dict[str, Any]
    model_evaluations: int
    options: dict[str, Any]
    note: str = ""

    @property
    def multi_target(self) -> bool:
        """True when ``values`` has a leading targets dimension."""
        return self.target.dim() == 2

    def rows(self) -> list[dict[str, Any]]:
        """One row per (target, example): the class, the attribution sum and each diagnostic."""
        values = self.values if self.multi_target else self.values.unsqueeze(0)
        return example_rows(self.target, self.diagnostics, lambda t, i: {"sum": float(values[t, i].sum())})

    def plot(
        self,
        ax=None,
        example: int = 0,
        *,
        feature_names: Sequence[str] | None = None,
        top: int = 12,
        inputs: torch.Tensor | None = None,
    ):  # -> matplotlib.figure.Figure
        """Draw one example's attribution (heat map for images, logo for DNA, bars for other sequences and tabular).

        One-hot DNA — ``inputs`` given as one-hot sequences ``(batch, 4, L)``, or an ``ism`` /
        ``deep_lift_shap`` result of four letters — is drawn as an attribution logo
        (:func:`~deepscope.attribution.logos.attribution_logo`, letters ACGT): with ``inputs`` the
        observed letters only, each as tall as its attribution (for ISM the position importance,
        ``−mean`` of the three substitution effects); without, every letter's value (for ISM the
        effect of substituting that letter).

        Args:
            ax: a matplotlib Axes to draw on (a new figure when None).
            example: which row of the batch.
            feature_names: names of tabular features (one per feature), used as bar labels instead
                of ``x0, x1, …``, e.g. ``dataset.feature_names``.
            top: how many tabular features to show, largest |attribution| first.
            inputs: the explained inputs (only used to draw one-hot DNA as a logo on its observed letters).
        """
        from deepscope._figures import new_figure

        values = self.values[0] if self.multi_target else self.values
        if not isinstance(example, int) or isinstance(example, bool) or not 0 <= example < values.shape[0]:
            raise invalid_parameter("example", "Attribution.plot", f"an int in [0, {values.shape[0]})", example)
        heights = self._dna_heights(values, example, inputs)
        if heights is not None:
            from deepscope.attribution.logos import attribution_logo

            title = f"{self.method}, example {example}, target {int(self.target.reshape(-1)[example])}"
            return attribution_logo(heights, ax=ax, title=title)
        if not isinstance(top, int) or isinstance(top, bool) or top < 1:
            raise invalid_parameter("top", "Attribution.plot", "an int >= 1", top)
        features = values[example].numel()
        if feature_names is not None:
            if isinstance(feature_names, str) or len(feature_names) != features:
                raise invalid_parameter(
                    "feature_names",
                    "Attribution.plot",
                    f"a sequence of {features} names (one per feature)",
                    feature_names,
                )
            feature_names = [str(name) for name in feature_names]
        if ax is None:
            figure, ax = new_figure(4.0, 3.0)
        else:
            figure = ax.figure
        draw_attribution(ax, values[example].detach().cpu(), feature_names, top)
        ax.set_title(f"{self.method}, example {example}, target {int(self.target.reshape(-1)[example])}")
        return figure

    def _dna_heights(self, values: torch.Tensor, example: int, inputs: Any) -> torch.Tensor | None:
        """The logo heights ``(4, L)`` of one example when it is one-hot DNA, else None."""
        if inputs is not None:
            from deepscope.attribution._registry import is_one_hot

            if not isinstance(inputs, torch.Tensor) or inputs.shape != values.shape or not is_one_hot(inputs):
                raise invalid_parameter(
                    "inputs",
                    "Attribution.plot",
                    f"one-hot sequences shaped like the values {tuple(values.shape)}",
                    inputs,
                )
        if values.dim() != 3 or values.shape[1] != 4 or (inputs is None and self.method not in _DNA_METHODS):
            return None
        row = values[example].detach().cpu().double()
        if inputs is None:
            return row
        sequence = inputs[example].detach().cpu().double()
        importance = self.diagnostics.get("position_importance") if self.method == "ism" else None
        if isinstance(importance, torch.Tensor):
            importance = importance[0] if self.multi_target else importance
            return importance[example].detach().cpu().double().unsqueeze(0) * sequence
        return row * sequence


_DNA_METHODS = frozenset({"ism", "deep_lift_shap"})  # methods whose four-letter results are one-hot DNA


def draw_attribution(
    ax, values: torch.Tensor, feature_names: Sequence[str] | None = None, top: int = 12, *, compact: bool = False
) -> None:
    """Draw one example's map on ``ax``: image heat map, per-position bars, or ranked tabular bars.

    ``compact`` drops the colour bar and axis labels (for grids of small panels).
    """
    array = values.double().numpy()
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[1] > 1 and array.shape[2] > 1:
        image = array.sum(axis=0)
        limit = float(np.abs(image).max()) or 1.0
        shown = ax.imshow(image, cmap="RdBu_r", vmin=-limit, vmax=limit)
        if not compact:
            ax.figure.colorbar(shown, ax=ax, shrink=0.8)
        ax.set_xticks([])
        ax.set_yticks([])
    elif array.ndim == 2:
        per_position = array.sum(axis=0)
        colors = ["tab:red" if v > 0 else "tab:blue" for v in per_position]
        ax.bar(np.arange(len(per_position)), per_position, color=colors)
        if compact:
            ax.set_xticks([])
            ax.set_yticks([])
        else:
            ax.set_xlabel("position")
            ax.set_ylabel("attribution (sum over channels)")
    else:
        flat = array.reshape(-1)
        order = np.argsort(-np.abs(flat))[:top][::-1]
        names = [feature_names[j] if feature_names else f"x{j}" for j in order]
        colors = ["tab:red" if flat[j] > 0 else "tab:blue" for j in order]
        ax.barh(np.arange(len(order)), flat[order], color=colors)
        if compact:
            ax.set_xticks([])
            ax.set_yticks(np.arange(len(order)), names, fontsize=5)
        else:
            ax.set_yticks(np.arange(len(order)), names)
            ax.set_xlabel("attribution")


# ----------------------------------------------------------------------------------------------
# chunked evaluation of F(x) and its gradient


def evaluate_selected(
    forward: Callable[[torch.Tensor], torch.Tensor], points: torch.Tensor, targets: torch.Tensor, max_batch: int
) -> torch.Tensor:
    """F for each row and each target: ``points`` (rows, ...), ``targets`` (T, rows) -> (T, rows)."""
    outputs = evaluate_outputs(forward, points, max_batch)
    return outputs.gather(1, targets.t()).t()


def selected_gradients(
    forward: Callable[[torch.Tensor], torch.Tensor], points: torch.Tensor, targets: torch.Tensor, max_batch: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """F and dF/dx for each row and target, chunked to ``max_batch`` rows per forward pass.

    One forward pass per chunk serves every target (one backward per target on the same graph).

    Args:
        points: (rows, *features); targets: (T, rows) class indices.

    Returns:
        values (T, rows) and gradients (T, rows, *features), detached.
    """
    n_targets = targets.shape[0]
    values = torch.empty(n_targets, points.shape[0], dtype=points.dtype, device=points.device)
    gradients = torch.empty((n_targets, *points.shape), dtype=points.dtype, device=points.device)
    for start in range(0, points.shape[0], max_batch):
        stop = min(start + max_batch, points.shape[0])
        chunk = points[start:stop].detach().requires_grad_(True)
        with torch.enable_grad():
            outputs = forward(chunk)
            for t in range(n_targets):
                selected = outputs.gather(1, targets[t, start:stop].unsqueeze(1)).squeeze(1)
                (grad,) = torch.autograd.grad(selected.sum(), chunk, retain_graph=t < n_targets - 1)
                values[t, start:stop] = selected.detach()
                gradients[t, start:stop] = grad
    return values, gradients


def chunk_starts(total: int, size: int, progress: bool = False, description: str = "") -> Any:
    """``range(0, total, size)``, wrapped in a tqdm bar when ``progress`` is True."""
    starts = range(0, total, size)
    if not progress:
        return starts
    from tqdm.auto import tqdm

    return tqdm(starts, desc=description, unit="chunk", leave=False)


def guard_note(model: nn.Module) -> str:
    """The model guard's note (train-mode modules switched to eval), or ''."""
    report = current_guard_report(model)
    return report.note if report is not None else ""


def finish(
    model: nn.Module,
    *,
    values: torch.Tensor,
    targets: torch.Tensor,
    multi: bool,
    method: str,
    diagnostics: dict[str, Any],
    evaluations: int,
    options: dict[str, Any],
) -> Attribution:
    """Build the :class:`Attribution` (drop the targets dimension when a single target was asked).

    Raises NonFiniteError when any value is NaN or infinite (the model overflows on these inputs):
    an attribution is never returned as NaN silently.
    """
    finite = torch.isfinite(values)
    if not bool(finite.all()):
        per_example = (~finite).reshape(*values.shape[:2], -1).any(dim=-1).any(dim=0)
        bad = per_example.nonzero().flatten().tolist()
        shown = ", ".join(map(str, bad[:5])) + (", ..." if len(bad) > 5 else "")
        raise NonFiniteError(
            f"{method}: the attributions of {len(bad)} example(s) ({shown}) are NaN or infinite: the model's "
            "output or its gradient overflows on these inputs. Rescale the inputs, or run the model in float64."
        )
    if not multi:
        values = values[0]
        targets = targets[0]
        diagnostics = {
            k: (v[0] if isinstance(v, torch.Tensor) and v.dim() >= 1 and v.shape[0] == 1 else v)
            for k, v in diagnostics.items()
        }
    clean_options = {k: v for k, v in options.items() if isinstance(v, (bool, int, float, str)) or v is None}
    return Attribution(
        values=values.detach(),
        target=targets.detach(),
        method=method,
        diagnostics=diagnostics,
        model_evaluations=int(evaluations),
        options=clean_options,
        note=guard_note(model),
    )


def relative_completeness_error(total: torch.Tensor, at_input: torch.Tensor, at_baseline: torch.Tensor) -> torch.Tensor:
    """|Σ attr − (F(x) − F(x'))| / |F(x) − F(x')| per example.

    The denominator is floored at 1e-7·(|F(x)| + |F(x')|) + 1e-12, so that a difference lost in
    rounding (F(x) ≈ F(x')) does not turn rounding noise into a large relative error.
    """
    difference = at_input - at_baseline
    floor = 1e-7 * (at_input.abs() + at_baseline.abs()) + 1e-12
    return (total - difference).abs() / torch.maximum(difference.abs(), floor)
