"""The shared shape of every attribution method: the :class:`Attribution` result and private helpers.

Every method has the call shape ``method(model, inputs, target=None, *, baseline=..., ...) -> Attribution``:

* ``inputs``: a float tensor ``(batch, *features)``; NaN/Inf are refused with a DataError.
* ``target``: ``None`` (the predicted class of each example), an int (the same class for every
  example), a 1-D tensor of ``batch`` ints (one class per example), or several targets at once —
  a list/tuple of ints or a 2-D tensor ``(n_targets, batch)`` — which gives values with a leading
  targets dimension ``(n_targets, batch, *features)``.
* ``output_fn``: for models that return a tuple or dict, a callable mapping the raw output to a
  ``(batch, classes)`` tensor (a ``(batch,)`` output is treated as one class).
* ``max_batch``: the largest number of rows passed through the model at once (memory budget);
  long path integrals and many perturbations are chunked to it.

F(x) below always means the selected output ("logit") of the target class.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from deepscope.errors import DataError, UnsupportedModelError, invalid_parameter
from deepscope.guard import current_guard_report
from deepscope.results import Result

__all__ = ["Attribution"]

DEFAULT_MAX_BATCH = 4096

OutputFn = Callable[[Any], torch.Tensor]


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
        targets = self.target if self.multi_target else self.target.unsqueeze(0)
        values = self.values if self.multi_target else self.values.unsqueeze(0)
        rows = []
        for t in range(targets.shape[0]):
            for i in range(targets.shape[1]):
                row: dict[str, Any] = {"example": i, "target": int(targets[t, i]), "sum": float(values[t, i].sum())}
                for key, value in self.diagnostics.items():
                    if isinstance(value, torch.Tensor) and value.shape == self.target.shape:
                        entry = value if self.multi_target else value.unsqueeze(0)
                        row[key] = float(entry[t, i])
                rows.append(row)
        return rows

    def plot(
        self, ax=None, example: int = 0, *, feature_names: Sequence[str] | None = None, top: int = 12
    ):  # -> matplotlib.figure.Figure
        """Draw one example's attribution (heat map for images, bars for sequences and tabular).

        Args:
            ax: a matplotlib Axes to draw on (a new figure when None).
            example: which row of the batch.
            feature_names: names of tabular features (one per feature), used as bar labels instead
                of ``x0, x1, …``, e.g. ``dataset.feature_names``.
            top: how many tabular features to show, largest |attribution| first.
        """
        from deepscope.report.svg import new_figure

        values = self.values[0] if self.multi_target else self.values
        if not isinstance(example, int) or isinstance(example, bool) or not 0 <= example < values.shape[0]:
            raise invalid_parameter("example", "Attribution.plot", f"an int in [0, {values.shape[0]})", example)
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
# validation and preparation


def model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """The device and floating dtype the model's first floating parameter or buffer uses."""
    for tensor in list(model.parameters()) + list(model.buffers()):
        if tensor.is_floating_point():
            return tensor.device, tensor.dtype
    return torch.device("cpu"), torch.get_default_dtype()


def prepare_inputs(model: nn.Module, inputs: Any, owner: str, *, gradient: bool = True) -> torch.Tensor:
    """Validate ``inputs`` (a finite float tensor with a batch dimension) and move it to the model."""
    if not isinstance(inputs, torch.Tensor):
        raise invalid_parameter("inputs", owner, "a torch.Tensor of shape (batch, *features)", inputs)
    if inputs.dim() < 2 or inputs.shape[0] == 0:
        raise invalid_parameter("inputs", owner, "a non-empty tensor of shape (batch, *features)", inputs)
    if not inputs.is_floating_point():
        expected = "a floating-point tensor (gradients need real-valued inputs; cast with .float())"
        if gradient:
            raise invalid_parameter("inputs", owner, expected, inputs)
    if inputs.is_floating_point() and not bool(torch.isfinite(inputs).all()):
        bad = int((~torch.isfinite(inputs)).sum())
        raise DataError(f"The 'inputs' of {owner} contain {bad} NaN or infinite value(s); clean them first.")
    device, dtype = model_device_dtype(model)
    return inputs.detach().to(device=device, dtype=dtype)


def prepare_baseline(baseline: Any, inputs: torch.Tensor, owner: str, name: str = "baseline") -> torch.Tensor:
    """A reference input shaped like ``inputs``: None/number (constant), or a tensor of shape
    ``inputs.shape`` or ``inputs.shape[1:]`` (one reference for every example)."""
    if baseline is None:
        return torch.zeros_like(inputs)
    if isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
        if not math.isfinite(float(baseline)):
            raise invalid_parameter(name, owner, "a finite number or a tensor shaped like the inputs", baseline)
        return torch.full_like(inputs, float(baseline))
    if not isinstance(baseline, torch.Tensor):
        raise invalid_parameter(name, owner, "None, a number, or a tensor shaped like the inputs", baseline)
    baseline = baseline.detach().to(device=inputs.device, dtype=inputs.dtype)
    if tuple(baseline.shape) == tuple(inputs.shape[1:]):
        baseline = baseline.unsqueeze(0).expand_as(inputs)
    if tuple(baseline.shape) != tuple(inputs.shape):
        raise invalid_parameter(
            name, owner, f"a tensor of shape {tuple(inputs.shape)} or {tuple(inputs.shape[1:])}", baseline
        )
    if not bool(torch.isfinite(baseline).all()):
        raise DataError(f"The '{name}' of {owner} contains NaN or infinite values.")
    return baseline.contiguous()


def make_forward(model: nn.Module, output_fn: OutputFn | None, owner: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """``forward(x) -> (rows, classes)``: the model's output, through ``output_fn`` when given."""
    if output_fn is not None and not callable(output_fn):
        raise invalid_parameter("output_fn", owner, "a callable mapping the model output to a tensor", output_fn)

    def forward(x: torch.Tensor) -> torch.Tensor:
        output = model(x)
        if output_fn is not None:
            output = output_fn(output)
        if not isinstance(output, torch.Tensor):
            raise UnsupportedModelError(
                f"{owner}: the model returned a {type(output).__name__}, not a tensor; pass "
                "output_fn=lambda out: out[0] (or out['logits']) to pick the class scores."
            )
        if output.dim() == 1:
            output = output.unsqueeze(1)
        if output.dim() != 2 or output.shape[0] != x.shape[0]:
            raise UnsupportedModelError(
                f"{owner}: the model output has shape {tuple(output.shape)}; expected (batch, classes) "
                f"with batch = {x.shape[0]}. Pass output_fn to reduce it to class scores."
            )
        return output

    return forward


def resolve_targets(
    forward: Callable[[torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    target: Any,
    owner: str,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> tuple[torch.Tensor, bool, int]:
    """Targets as a long tensor ``(n_targets, batch)``, whether several were asked, and evaluations used.

    ``None`` means the predicted class (one forward pass over the inputs, in chunks of ``max_batch``
    rows). Given targets are checked against the class count of a one-row probe, so an attribution
    with explicit targets costs no extra pass over the batch.
    """
    batch = inputs.shape[0]
    if target is None:
        logits = evaluate_outputs(forward, inputs, max_batch)
        evaluations = batch
    else:
        with torch.no_grad():
            logits = forward(inputs[:1])
        evaluations = 1
    classes = logits.shape[1]
    multi = False
    if target is None:
        targets = logits.argmax(dim=1).unsqueeze(0)
    elif isinstance(target, bool):
        raise invalid_parameter("target", owner, "None, an int, a tensor of ints, or a list of ints", target)
    elif isinstance(target, int):
        targets = torch.full((1, batch), target, dtype=torch.long)
    elif isinstance(target, (list, tuple)):
        if not target or not all(isinstance(t, int) and not isinstance(t, bool) for t in target):
            raise invalid_parameter("target", owner, "a non-empty list of ints (several targets)", target)
        targets = torch.tensor(list(target), dtype=torch.long).unsqueeze(1).expand(len(target), batch)
        multi = True
    elif isinstance(target, torch.Tensor):
        if target.is_floating_point() or target.is_complex():
            raise invalid_parameter("target", owner, "a tensor of integer class indices", target)
        if target.dim() == 0:
            targets = target.long().reshape(1, 1).expand(1, batch)
        elif target.dim() == 1 and target.shape[0] == batch:
            targets = target.long().unsqueeze(0)
        elif target.dim() == 2 and target.shape[1] == batch:
            targets = target.long()
            multi = True
        else:
            raise invalid_parameter("target", owner, f"a tensor of shape ({batch},) or (n_targets, {batch})", target)
    else:
        raise invalid_parameter("target", owner, "None, an int, a tensor of ints, or a list of ints", target)
    targets = targets.to(inputs.device).contiguous()
    if bool((targets < 0).any()) or bool((targets >= classes).any()):
        raise invalid_parameter("target", owner, f"class indices in [0, {classes - 1}]", target)
    return targets, multi, evaluations


def check_max_batch(max_batch: Any, owner: str) -> int:
    """The memory budget: an int >= 1 (rows per model call)."""
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
        raise invalid_parameter("max_batch", owner, "an int >= 1", max_batch)
    return max_batch


# ----------------------------------------------------------------------------------------------
# chunked evaluation of F(x) and its gradient


def evaluate_outputs(
    forward: Callable[[torch.Tensor], torch.Tensor], points: torch.Tensor, max_batch: int
) -> torch.Tensor:
    """All class scores ``(rows, classes)`` for ``points`` (rows, *features), in chunks, no graph."""
    outputs = []
    with torch.no_grad():
        for start in range(0, points.shape[0], max_batch):
            outputs.append(forward(points[start : start + max_batch]))
    return torch.cat(outputs)


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
    """Build the :class:`Attribution` (drop the targets dimension when a single target was asked)."""
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


@dataclasses.dataclass
class Prepared:
    """What every method needs after validation: inputs on the model's device, forward, targets."""

    inputs: torch.Tensor
    forward: Callable[[torch.Tensor], torch.Tensor]
    targets: torch.Tensor
    multi: bool
    evaluations: int
    max_batch: int


def prepare(
    model: nn.Module,
    inputs: Any,
    target: Any,
    *,
    owner: str,
    output_fn: OutputFn | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
    gradient: bool = True,
) -> Prepared:
    """Validate the common arguments and resolve the targets (one forward pass when target is None)."""
    if not isinstance(model, nn.Module):
        raise invalid_parameter("model", owner, "a torch.nn.Module", model)
    max_batch = check_max_batch(max_batch, owner)
    x = prepare_inputs(model, inputs, owner, gradient=gradient)
    forward = make_forward(model, output_fn, owner)
    targets, multi, evaluations = resolve_targets(forward, x, target, owner, max_batch)
    return Prepared(x, forward, targets, multi, evaluations, max_batch)
