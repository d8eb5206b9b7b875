"""Attribution over several input tensors, ``model(x1, x2, ..., *args)`` (Captum's tuple convention).

A tuple of inputs ``(x1, x2, ...)``, each ``(batch, *features_i)``, is packed into ONE float
tensor ``(batch, F1 + F2 + ...)`` (every example's features side by side, ``F_i`` the number of
features of input i); :class:`PackedModel` unpacks it and calls the model with the separate
tensors. A gradient or path method run on the packed tensor is then exactly that method on the
tuple:

* ∂F/∂(packed) is the concatenation of the ∂F/∂x_i (saliency, input × gradient);
* the straight path x' + α(x − x') of the packed tensor moves every input from its baseline
  together — the joint path of Captum's ``IntegratedGradients`` on a tuple — so the adaptive step
  choice and the completeness error, |Σ_i Σ φ_i − (F(x) − F(x'))|, are over all inputs together;
* DeepLIFT traces the model with its k inputs as k attributed placeholders (the engine follows
  dependence from all of them) and packs the k multipliers.

The values are split back into one tensor per input, in a :class:`MultiInputAttribution`; its
:meth:`~MultiInputAttribution.part` gives one input's map as an ordinary :class:`Attribution`.

Example:
    >>> class TwoInputs(torch.nn.Module):
    ...     def forward(self, a, b):
    ...         return a.sum(1, keepdim=True) * 2 + b.sum(1, keepdim=True)
    >>> from deepscope.attribution.saliency import saliency
    >>> result = saliency(TwoInputs(), (torch.ones(2, 3), torch.ones(2, 5)), target=0)
    >>> [tuple(v.shape) for v in result.values], result.values[0][0, 0].item(), result.values[1][0, 0].item()
    ([(2, 3), (2, 5)], 2.0, 1.0)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from deepscope.attribution._base import Attribution, example_rows
from deepscope.attribution._prepare import prepare_baseline, prepare_inputs
from deepscope.errors import DataError, DeepscopeError, invalid_parameter
from deepscope.results import Result, format_value

__all__ = [
    "MultiInputAttribution",
    "Packing",
    "PackedModel",
    "is_multi_input",
    "pack_baseline",
    "pack_inputs",
    "packed_baseline",
    "packed_call",
    "split_result",
    "unpacked",
]


def is_multi_input(inputs: Any) -> bool:
    """True for a tuple of inputs (Captum's convention: a tuple of inputs gives a tuple of attributions)."""
    return isinstance(inputs, tuple)


@dataclasses.dataclass(frozen=True)
class Packing:
    """How k inputs sit side by side in one packed tensor: the per-example shape of each input."""

    shapes: tuple[tuple[int, ...], ...]

    @property
    def sizes(self) -> tuple[int, ...]:
        """The number of features of each input, ``F_i = prod(shape_i)``."""
        return tuple(math.prod(shape) for shape in self.shapes)

    def pack(self, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        """``(..., rows, *shape_i)`` per input -> ``(..., rows, F1 + F2 + ...)`` (same leading dims)."""
        flat = [t.flatten(t.dim() - len(shape)) for t, shape in zip(tensors, self.shapes, strict=True)]
        return torch.cat(flat, dim=-1)

    def unpack(self, packed: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(..., rows, F1 + F2 + ...)`` -> one ``(..., rows, *shape_i)`` per input.

        The parts are basic-index slices (single views, which an in-place model layer may
        overwrite without an autograd error), made contiguous (copies when k > 1).
        """
        parts, start = [], 0
        for shape, size in zip(self.shapes, self.sizes, strict=True):
            part = packed[..., start : start + size]
            parts.append(part.reshape(*packed.shape[:-1], *shape).contiguous())
            start += size
        return tuple(parts)


class PackedModel(nn.Module):
    """``forward(packed, *args) = model(x1, ..., xk, *args)``: the model on the unpacked inputs.

    It only holds the user's model (no parameters or state of its own). Until a call has
    succeeded, a shape or type error of the model is the shared "cannot take the inputs" DataError
    naming every input's per-example shape (the packed shape would mean nothing to the caller).
    """

    def __init__(self, model: nn.Module, packing: Packing) -> None:
        super().__init__()
        self.model, self.packing = model, packing
        self.succeeded = False

    def forward(self, packed: torch.Tensor, *args: Any) -> Any:
        parts = self.packing.unpack(packed)
        if self.succeeded:
            return self.model(*parts, *args)
        try:
            output = self.model(*parts, *args)
        except (DeepscopeError, torch.cuda.OutOfMemoryError):
            raise
        except (RuntimeError, TypeError, ValueError, IndexError) as error:
            shapes = " and ".join(str(shape) for shape in self.packing.shapes)
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            call = ", ".join(f"x{i + 1}" for i in range(len(parts)))
            raise DataError(
                f"The model cannot take the {len(parts)} inputs of shapes {shapes} per example, model({call}): {reason}"
            ) from error
        self.succeeded = True
        return output


def _accepted(owner: str) -> str:
    return f"a tensor of shape (batch, *features) or a non-empty tuple of such float tensors ({owner}(model, (x1, x2)))"


def pack_inputs(model: nn.Module, inputs: tuple, owner: str) -> tuple[Packing, tuple[torch.Tensor, ...], torch.Tensor]:
    """Validate a tuple of inputs; return the packing, the checked copies (model device and dtype) and the packed tensor.

    Each input must be a finite float tensor ``(batch, *features)``, all with the same batch length.
    """
    if len(inputs) == 0:
        raise invalid_parameter("inputs", owner, _accepted(owner), inputs)
    for i, tensor in enumerate(inputs):
        if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point() or tensor.dim() < 2:
            raise invalid_parameter(
                f"inputs[{i}]", owner, "a floating-point tensor of shape (batch, *features)", tensor
            )
    lengths = [int(tensor.shape[0]) for tensor in inputs]
    if len(set(lengths)) > 1:
        raise DataError(
            f"The {len(inputs)} inputs of {owner} must have the same batch length (one row per example in each). "
            f"Got batch lengths {lengths}."
        )
    parts = tuple(prepare_inputs(model, tensor, owner) for tensor in inputs)
    packing = Packing(tuple(tuple(part.shape[1:]) for part in parts))
    return packing, parts, packing.pack(parts)


def pack_baseline(
    baseline: Any, packing: Packing, parts: tuple[torch.Tensor, ...], owner: str, name: str = "baseline"
) -> torch.Tensor:
    """The packed references: None or a number (the same for every input), or a tuple of one
    baseline per input (each None, a number, or a tensor shaped like that input or one example of it)."""
    if isinstance(baseline, tuple):
        if len(baseline) != len(parts):
            raise invalid_parameter(name, owner, f"a tuple of {len(parts)} baselines (one per input)", baseline)
        references = [prepare_baseline(b, x, owner, f"{name}[{i}]") for i, (b, x) in enumerate(zip(baseline, parts))]
    elif baseline is None or isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
        references = [prepare_baseline(baseline, x, owner, name) for x in parts]
    else:
        raise invalid_parameter(
            name, owner, f"None, a number, or a tuple of {len(parts)} baselines (one per input)", baseline
        )
    return packing.pack(references)


@dataclasses.dataclass(frozen=True)
class MultiInputAttribution(Result):
    """Attributions of a model with several inputs: one tensor of values per input.

    Attributes:
        values: one tensor per input, shaped like it: ``(batch, *features_i)``, or
            ``(n_targets, batch, *features_i)`` for several targets.
        target: the class each row explains: ``(batch,)`` or ``(n_targets, batch)``.
        method: the method's name.
        diagnostics: per-example tensors shaped like ``target``, over ALL inputs together: e.g.
            ``completeness_error`` is |Σ_i Σ φ_i − (F(x) − F(x'))| / |F(x) − F(x')| with x the whole tuple.
        model_evaluations: number of examples passed through the model (all inputs of an example count once).
        options: the options the method ran with (JSON-able).
        note: a sentence about train-mode modules switched to eval, if any.
    """

    values: tuple[torch.Tensor, ...]
    target: torch.Tensor
    method: str
    diagnostics: dict[str, Any]
    model_evaluations: int
    options: dict[str, Any]
    note: str = ""

    @property
    def multi_target(self) -> bool:
        """True when the values have a leading targets dimension."""
        return self.target.dim() == 2

    @property
    def n_inputs(self) -> int:
        """The number of inputs (tensors in ``values``)."""
        return len(self.values)

    def part(self, index: int) -> Attribution:
        """Input ``index``'s attribution as an ordinary :class:`Attribution` (for plots and metrics).

        Its diagnostics are the joint ones (over all inputs), as its note says.
        """
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < self.n_inputs:
            raise invalid_parameter("index", "MultiInputAttribution.part", f"an int in [0, {self.n_inputs})", index)
        joint = f"input {index} of {self.n_inputs}; the diagnostics are over all {self.n_inputs} inputs together."
        return Attribution(
            values=self.values[index],
            target=self.target,
            method=self.method,
            diagnostics=dict(self.diagnostics),
            model_evaluations=self.model_evaluations,
            options=dict(self.options),
            note=f"{self.note} {joint}".strip(),
        )

    def rows(self) -> list[dict[str, Any]]:
        """One row per (target, example): the class, each input's sum (``sum_0``, ...), their total and each diagnostic."""
        values = [v if self.multi_target else v.unsqueeze(0) for v in self.values]

        def sums(t: int, i: int) -> dict[str, float]:
            parts = [float(v[t, i].sum()) for v in values]
            return {**{f"sum_{k}": part for k, part in enumerate(parts)}, "sum": float(sum(parts))}

        return example_rows(self.target, self.diagnostics, sums)

    def summary(self) -> str:
        """``"deeplift over 2 inputs (3, 8, 8) and (5,), 4 examples; completeness error at most 2e-07."``"""
        shapes = [str(tuple(v.shape[2:] if self.multi_target else v.shape[1:])) for v in self.values]
        batch = self.target.shape[-1]
        text = f"{self.method} over {self.n_inputs} input(s) {', '.join(shapes)}, {batch} example(s)"
        error = self.diagnostics.get("completeness_error")
        if isinstance(error, torch.Tensor) and error.numel():
            text += f"; completeness error (all inputs together) at most {format_value(float(error.max()))}"
        return text + "."

    def plot(self, ax=None, example: int = 0, *, inputs: tuple | None = None):  # -> matplotlib.figure.Figure
        """One panel per input for one example, each drawn as :meth:`Attribution.plot` draws it
        (heat map for images, logo for one-hot DNA, bars for other sequences and tabular).

        Args:
            ax: None (a new figure) or a sequence of one matplotlib Axes per input.
            example: which row of the batch.
            inputs: None, or the explained inputs as a tuple (an entry may be None): a one-hot
                sequence among them is drawn as a logo on its observed letters.
        """
        from deepscope._figures import new_figure

        owner = "MultiInputAttribution.plot"
        batch = self.target.shape[-1]
        if not isinstance(example, int) or isinstance(example, bool) or not 0 <= example < batch:
            raise invalid_parameter("example", owner, f"an int in [0, {batch})", example)
        if inputs is not None and (not isinstance(inputs, tuple) or len(inputs) != self.n_inputs):
            raise invalid_parameter("inputs", owner, f"None or a tuple of {self.n_inputs} tensors (or None)", inputs)
        if ax is None:
            figure, axes = new_figure(4.0 * self.n_inputs, 3.0, ncols=self.n_inputs)
            axes = [axes] if self.n_inputs == 1 else list(axes)
        else:
            axes = list(ax) if isinstance(ax, (list, tuple)) else [ax]
            if len(axes) != self.n_inputs:
                raise invalid_parameter("ax", owner, f"None or a sequence of {self.n_inputs} Axes", ax)
            figure = axes[0].figure
        for k, panel in enumerate(axes):
            self.part(k).plot(panel, example, inputs=None if inputs is None else inputs[k])
            panel.set_title(f"input {k}: {panel.get_title()}", fontsize=9)
        return figure


def split_result(result: Attribution, packing: Packing) -> MultiInputAttribution:
    """The packed method's :class:`Attribution` split into one tensor of values per input."""
    return MultiInputAttribution(
        values=packing.unpack(result.values),
        target=result.target,
        method=result.method,
        diagnostics=result.diagnostics,
        model_evaluations=result.model_evaluations,
        options=result.options,
        note=result.note,
    )


# ----------------------------------------------------------------------------------------------
# the three steps a method takes: pack the call, pack the baseline, split the result


def packed_call(model: nn.Module, inputs: Any, owner: str) -> tuple[Packing | None, Any, nn.Module]:
    """``(packing, inputs, model to run)``: for a tuple, its packing, the packed tensor and the
    :class:`PackedModel`; for anything else ``(None, inputs, model)`` unchanged."""
    if not is_multi_input(inputs):
        return None, inputs, model
    packing, _, packed = pack_inputs(model, inputs, owner)
    return packing, packed, PackedModel(model, packing)


def packed_baseline(
    baseline: Any, x: torch.Tensor, packing: Packing | None, owner: str, name: str = "baseline"
) -> torch.Tensor:
    """The reference for the (packed) inputs ``x``: :func:`prepare_baseline` for one input, else
    :func:`pack_baseline` (None, a number, or a tuple of one baseline per input)."""
    if packing is None:
        return prepare_baseline(baseline, x, owner, name)
    return pack_baseline(baseline, packing, packing.unpack(x), owner, name)


def unpacked(result: Attribution, packing: Packing | None) -> Attribution | MultiInputAttribution:
    """The method's result as the caller gave the inputs: unchanged for one tensor, split for a tuple."""
    return result if packing is None else split_result(result, packing)
