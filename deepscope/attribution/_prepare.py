"""Validation and preparation shared by every attribution method: inputs, baseline, forward, targets.

The call shape ``method(model, inputs, target=None, *, ...)`` is described in
:mod:`deepscope.attribution._base`; this module turns its arguments into a :class:`Prepared`:

* ``inputs`` are checked (a finite float tensor with a batch dimension) and COPIED onto the
  model's device and dtype, so a model that works in place (``ReLU(inplace=True)`` as its first
  layer) never changes the caller's tensor; every forward pass also gets its own copy. Integer
  token ids and dicts of named tensors (``{"input_ids": ..., "attention_mask": ...}``, passed as
  ``model(**inputs)``) are accepted by the methods that attribute at a layer and by occlusion;
  the input-space methods refuse them with a message naming the methods registered to take them
  (``takes={"tensor", "tokens"}`` in :func:`~deepscope.attribution._registry.attribution_method`).
  Integer tensors are never cast (:func:`deepscope._inputs.move`). A tuple of float tensors
  (several inputs, ``model(x1, x2, ...)``) is packed by the methods registered with ``"tuple"``
  before it gets here (:mod:`deepscope.attribution._multi_input`); the others refuse it, naming those.
* the model's weights must be finite (a NaN weight would make every attribution NaN): checked once,
  by the ``@analysis`` wrapper (:mod:`deepscope.registry`) every method and metric is called through.
* ``target`` follows Captum: ``None`` (the predicted class), an int (the same class for every
  example), or one target per example — a list of ``batch`` ints, or a 1-D tensor of ``batch`` ints.
  Several targets per example need an explicit 2-D form: a tensor (or nested list) of shape
  ``(n_targets, batch)``, or ``(n_targets, 1)`` for the same classes for every example; values then
  get a leading targets dimension ``(n_targets, batch, *features)``.
* a model that cannot take the inputs raises the same DataError as :class:`deepscope.Problem`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from deepscope._forward import first_forward
from deepscope._inputs import Inputs, batch_length, call_model, floating, is_mapping, move, slice_rows
from deepscope.errors import DataError, UnsupportedModelError, invalid_parameter

__all__ = [
    "DEFAULT_MAX_BATCH",
    "is_token_inputs",
    "OutputFn",
    "Prepared",
    "prepare",
    "prepare_inputs",
    "prepare_baseline",
    "make_forward",
    "resolve_targets",
    "check_max_batch",
    "evaluate_outputs",
    "model_device_dtype",
]

DEFAULT_MAX_BATCH = 4096


def _methods_taking(kind: str) -> tuple[str, ...]:
    """The registered methods taking ``inputs`` of this kind (the registry imports this module: read it late)."""
    from deepscope.attribution._registry import methods_taking

    return methods_taking(kind)


OutputFn = Callable[[Any], torch.Tensor]

_TARGET_FORMS = (
    "None, an int, one target per example (a list or 1-D tensor of {batch} ints), or several targets per "
    "example as a 2-D tensor or nested list of shape {shapes}"
)


def model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """The device and floating dtype the model's first floating parameter or buffer uses."""
    for tensor in list(model.parameters()) + list(model.buffers()):
        if tensor.is_floating_point():
            return tensor.device, tensor.dtype
    return torch.device("cpu"), torch.get_default_dtype()


def is_token_inputs(inputs: Any) -> bool:
    """True for integer token ids or a dict of named tensors (inputs no input gradient exists for)."""
    if is_mapping(inputs):
        return True
    return isinstance(inputs, torch.Tensor) and not (inputs.is_floating_point() or inputs.is_complex())


def prepare_inputs(
    model: nn.Module, inputs: Any, owner: str, *, gradient: bool = True, tokens: bool | None = None
) -> Inputs:
    """Validate ``inputs``; return a COPY on the model's device (floats cast to its dtype).

    A float tensor ``(batch, *features)`` is what every method takes. Integer token ids and dicts
    of named tensors are taken only with ``tokens=True`` (default: whether ``owner`` is registered with
    ``takes`` holding ``"tokens"``: the layer methods and occlusion); other methods refuse
    them, naming the methods registered to take them. The copy keeps the caller's tensors unchanged when the
    model works in place.
    """
    if tokens is None:
        tokens = owner in _methods_taking("tokens")
    device, dtype = model_device_dtype(model)
    integer_tensor = isinstance(inputs, torch.Tensor) and not is_mapping(inputs)
    if is_token_inputs(inputs) and (tokens or not (integer_tensor and not gradient)):
        # (a perturbation method, gradient=False, takes an integer tensor as numbers, e.g. int one-hot DNA)
        if not tokens:
            kind = "a dict of named tensors" if is_mapping(inputs) else "integer token ids"
            why = (
                "token ids can be neither differentiated nor perturbed continuously"
                if gradient
                else "it perturbs a single tensor"
            )
            raise invalid_parameter(
                "inputs",
                owner,
                f"a floating-point tensor of shape (batch, *features) ({why}); for {kind}, attribute at the "
                f"embedding layer or occlude tokens (baseline=<pad id>) with {', '.join(_methods_taking('tokens'))}",
                inputs,
            )
        batch_length(inputs)  # one batch length for every named tensor (DataError otherwise)
        if any(value.shape[0] == 0 for value in (inputs.values() if is_mapping(inputs) else [inputs])):
            raise invalid_parameter("inputs", owner, "a non-empty batch", inputs)
        for value in floating(inputs):
            if not bool(torch.isfinite(value).all()):
                bad = int((~torch.isfinite(value)).sum())
                raise DataError(f"The 'inputs' of {owner} contain {bad} NaN or infinite value(s); clean them first.")
        return move(inputs, device=device, dtype=dtype, copy=True)
    several = isinstance(inputs, (tuple, list)) and any(isinstance(value, torch.Tensor) for value in inputs)
    takers = _methods_taking("tuple")
    if several and owner not in takers:
        raise invalid_parameter(
            "inputs",
            owner,
            f"a torch.Tensor of shape (batch, *features) ({owner} attributes a single input; several inputs, "
            f"model(x1, x2, ...), are taken as a tuple by {', '.join(takers)})",
            inputs,
        )
    if not isinstance(inputs, torch.Tensor):
        expected = "a torch.Tensor of shape (batch, *features)"
        if owner in takers:  # e.g. a list of tensors: several inputs are a tuple, as in Captum
            expected += " or a tuple of such tensors (several inputs, model(x1, x2, ...))"
        raise invalid_parameter("inputs", owner, expected, inputs)
    if inputs.dim() < 2 or inputs.shape[0] == 0:
        raise invalid_parameter("inputs", owner, "a non-empty tensor of shape (batch, *features)", inputs)
    if inputs.is_complex():
        raise invalid_parameter("inputs", owner, "a real floating-point tensor", inputs)
    if inputs.is_floating_point() and not bool(torch.isfinite(inputs).all()):
        bad = int((~torch.isfinite(inputs)).sum())
        raise DataError(f"The 'inputs' of {owner} contain {bad} NaN or infinite value(s); clean them first.")
    return inputs.detach().to(device=device, dtype=dtype, copy=True)


def _fresh(x: Inputs) -> Inputs:
    """A copy the model may overwrite: ``x.clone()`` (differentiable), or a clone of every named tensor."""
    if is_mapping(x):
        return {name: value.clone() for name, value in x.items()}  # type: ignore[union-attr]
    return x.clone()  # type: ignore[union-attr]


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


def make_forward(model: nn.Module, output_fn: OutputFn | None, owner: str) -> Callable[[Any], torch.Tensor]:
    """``forward(x) -> (rows, classes)``: the model's output, through ``output_fn`` when given.

    The model always receives a copy of ``x`` (``x.clone()``, differentiable), so an in-place first
    layer neither corrupts the points a method reuses nor fails on a leaf that requires grad. A
    dict ``x`` is passed as keyword arguments, ``model(**x)``.
    """
    if output_fn is not None and not callable(output_fn):
        raise invalid_parameter("output_fn", owner, "a callable mapping the model output to a tensor", output_fn)

    def forward(x: Any) -> torch.Tensor:
        output = call_model(model, _fresh(x))
        if output_fn is not None:
            output = output_fn(output)
        if not isinstance(output, torch.Tensor):
            raise UnsupportedModelError(
                f"{owner}: the model returned a {type(output).__name__}, not a tensor; pass "
                "output_fn=lambda out: out[0] (or out['logits']) to pick the class scores."
            )
        if output.dim() == 1:
            output = output.unsqueeze(1)
        rows = batch_length(x)
        if output.dim() != 2 or output.shape[0] != rows:
            raise UnsupportedModelError(
                f"{owner}: the model output has shape {tuple(output.shape)}; expected (batch, classes) "
                f"with batch = {rows}. Pass output_fn to reduce it to class scores."
            )
        return output

    return forward


def evaluate_outputs(forward: Callable[[Any], torch.Tensor], points: Inputs, max_batch: int) -> torch.Tensor:
    """All class scores ``(rows, classes)`` for ``points`` (rows, *features) or a dict, in chunks, no graph."""
    outputs = []
    with torch.no_grad():
        for start in range(0, batch_length(points), max_batch):
            outputs.append(forward(slice_rows(points, start, start + max_batch)))
    return torch.cat(outputs)


def _probe(forward: Callable[[Any], torch.Tensor], inputs: Inputs, max_batch: int) -> torch.Tensor:
    """The first forward pass; a model that cannot take the inputs gives Problem's DataError."""
    return first_forward(lambda points: evaluate_outputs(forward, points, max_batch), inputs)


def _is_index(value: Any) -> bool:
    """An int-like class index: a Python/numpy int or a 0-d integer tensor (not a bool)."""
    if isinstance(value, torch.Tensor):
        return value.dim() == 0 and not (value.is_floating_point() or value.is_complex() or value.dtype == torch.bool)
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _target_tensor(target: Any, batch: int, owner: str) -> tuple[torch.Tensor, bool]:
    """``(targets (n_targets, batch or 1), several)`` from any accepted form, before the range check."""
    shapes = f"(n_targets, {batch}) or (n_targets, 1)" if batch != 1 else "(n_targets, 1)"
    forms = _TARGET_FORMS.format(batch=batch, shapes=shapes)
    if isinstance(target, bool) or isinstance(target, np.bool_):
        raise invalid_parameter("target", owner, forms, target)
    if isinstance(target, (int, np.integer)):
        return torch.tensor([[int(target)]]), False
    if isinstance(target, np.ndarray):
        target = torch.from_numpy(np.ascontiguousarray(target))
    if isinstance(target, (list, tuple)):
        if target and all(isinstance(t, (list, tuple)) for t in target):
            rows = [list(row) for row in target]
            flat = [t for row in rows for t in row]
            if not all(len(row) == len(rows[0]) for row in rows) or not all(_is_index(t) for t in flat):
                raise invalid_parameter("target", owner, forms, target)
            target = torch.tensor([[int(t) for t in row] for row in rows], dtype=torch.long)
        elif target and all(_is_index(t) for t in target):
            if len(target) != batch:
                raise invalid_parameter(
                    "target",
                    owner,
                    f"a list of {batch} int(s) (one target per example, as in Captum); for several targets per "
                    f"example pass a 2-D tensor or nested list of shape {shapes}, e.g. [[0], [2]]",
                    target,
                )
            return torch.tensor([int(t) for t in target], dtype=torch.long).unsqueeze(0), False
        else:
            raise invalid_parameter("target", owner, forms, target)
    if not isinstance(target, torch.Tensor):
        raise invalid_parameter("target", owner, forms, target)
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise invalid_parameter("target", owner, "a tensor of integer class indices", target)
    if target.dim() == 0:
        return target.long().reshape(1, 1), False
    if target.dim() == 1 and target.shape[0] == batch:
        return target.long().unsqueeze(0), False
    if target.dim() == 2 and target.shape[0] >= 1 and target.shape[1] in (batch, 1):
        return target.long(), True
    raise invalid_parameter("target", owner, forms, target)


def resolve_targets(
    forward: Callable[[Any], torch.Tensor],
    inputs: Inputs,
    target: Any,
    owner: str,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> tuple[torch.Tensor, bool, int]:
    """Targets as a long tensor ``(n_targets, batch)``, whether several were asked, and evaluations used.

    ``None`` means the predicted class (one forward pass over the inputs, in chunks of ``max_batch``
    rows). Given targets are checked against the class count of a one-row probe, so an attribution
    with explicit targets costs no extra pass over the batch. See the module docstring for the forms.
    """
    batch = batch_length(inputs)
    targets = None
    multi = False
    if target is not None:  # validate the form before running the model
        targets, multi = _target_tensor(target, batch, owner)
    logits = _probe(forward, inputs if target is None else slice_rows(inputs, 0, 1), max_batch)
    evaluations = batch if target is None else 1
    classes = logits.shape[1]
    if targets is None:
        targets = logits.argmax(dim=1).unsqueeze(0)
    targets = targets.to(logits.device).expand(targets.shape[0], batch).contiguous()
    if bool((targets < 0).any()) or bool((targets >= classes).any()):
        raise invalid_parameter(
            "target", owner, f"class indices in [0, {classes - 1}] (the model has {classes} outputs)", target
        )
    return targets, multi, evaluations


def check_max_batch(max_batch: Any, owner: str) -> int:
    """The memory budget: an int >= 1 (rows per model call)."""
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
        raise invalid_parameter("max_batch", owner, "an int >= 1", max_batch)
    return max_batch


@dataclasses.dataclass
class Prepared:
    """What every method needs after validation: inputs on the model's device, forward, targets."""

    inputs: Any  # a tensor; integer ids or a dict of tensors for the methods registered to take tokens
    forward: Callable[[Any], torch.Tensor]
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
    tokens: bool | None = None,
) -> Prepared:
    """Validate the common arguments and resolve the targets (one forward pass when target is None).

    ``tokens=True`` lets integer token ids and dicts of tensors through (default: what the registry
    says of ``owner``; see :func:`prepare_inputs`).
    """
    if not isinstance(model, nn.Module):
        raise invalid_parameter("model", owner, "a torch.nn.Module", model)
    max_batch = check_max_batch(max_batch, owner)
    x = prepare_inputs(model, inputs, owner, gradient=gradient, tokens=tokens)
    # (the model's weights were checked finite by the @analysis wrapper every method is called through)
    forward = make_forward(model, output_fn, owner)
    targets, multi, evaluations = resolve_targets(forward, x, target, owner, max_batch)
    return Prepared(x, forward, targets, multi, evaluations, max_batch)
