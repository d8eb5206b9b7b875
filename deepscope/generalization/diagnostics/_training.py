"""The diagnostics' retraining, on deepscope's one training loop and one starting point.

``fresh_copy`` is :func:`deepscope.models.initial.initial_copy` of the Problem's model (at its
``init_state``, else re-initialised). ``fit`` trains with :func:`deepscope.models.train` (Adam on
cross-entropy, seeded shuffling and Dropout) and adds what the diagnostics need through the
trainer's options: per-epoch train accuracy, a stop once the training set is fit, augmentation,
and the weights of the epoch with the lowest validation error (early stopping). The trained
weights are loaded back into the given copy, which the diagnostics then evaluate.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import nn

from deepscope import _inputs
from deepscope._outputs import OutputFn, select_output
from deepscope._validation import check_float, check_int
from deepscope.models.initial import initial_copy
from deepscope.models.trainer import train as train_model

if TYPE_CHECKING:
    from deepscope.problem import Problem

__all__ = ["FitHistory", "fresh_copy", "fit", "error_rate", "check_training"]


@dataclasses.dataclass
class FitHistory:
    """Per-epoch train/test accuracy (index 0: before training) and the trained copy."""

    train_accuracy: list[float]
    test_accuracy: list[float]
    model: nn.Module
    best_epoch: int | None = None


def fresh_copy(problem: Problem, seed: int) -> nn.Module:
    """A deep copy of the model at its initial weights (``init_state``), or re-initialised (see ``initial_copy``)."""
    return initial_copy(problem.model, problem.init_state, seed=seed)


def error_rate(
    model: nn.Module, x: _inputs.Inputs, y: torch.Tensor, chunk: int = 2048, output_fn: OutputFn | None = None
) -> float:
    """0-1 error of ``model`` (eval mode) on ``(x, y)``; ``x`` a tensor or a dict of tensors, scores by ``output_fn``."""
    was_training = model.training
    model.eval()
    wrong = 0
    with torch.no_grad():
        for start in range(0, len(y), chunk):
            output = _inputs.call_model(model, _inputs.slice_rows(x, start, start + chunk))
            scores = select_output(output, output_fn, "error_rate")
            wrong += int((scores.argmax(-1) != y[start : start + chunk]).sum())
    model.train(was_training)
    return wrong / max(len(y), 1)


def check_training(owner: str, *, epochs: int, lr: float, batch_size: int) -> tuple[int, float, int]:
    """The training budget every diagnostic shares, checked with the message naming ``owner``.

    ``epochs`` an int >= 1, ``lr`` a finite float > 0 (Adam refused NaN with a raw ValueError),
    ``batch_size`` an int >= 1 (0 was a raw ``range()`` error).
    """
    return (
        check_int(epochs, "epochs", owner, minimum=1),
        check_float(lr, "lr", owner, minimum=0.0, strict_minimum=True),
        check_int(batch_size, "batch_size", owner, minimum=1),
    )


def fit(
    model: nn.Module,
    train: tuple[_inputs.Inputs, torch.Tensor],
    test: tuple[_inputs.Inputs, torch.Tensor] | None,
    *,
    epochs: int,
    lr: float,
    batch_size: int = 64,
    weight_decay: float = 0.0,
    seed: int = 0,
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    stop_at_train_accuracy: float | None = None,
    validation: tuple[_inputs.Inputs, torch.Tensor] | None = None,
    output_fn: OutputFn | None = None,
) -> FitHistory:
    """Adam on cross-entropy (:func:`deepscope.models.train`); records accuracies each epoch; optional
    stop once ``stop_at_train_accuracy`` is reached or best-on-validation weights. ``model`` ends trained.
    ``output_fn`` (the Problem's) picks the scores from a model that returns a dict or tuple."""
    x, y = train
    history = FitHistory([], [], model)
    best: dict[str, object] = {}

    def after_epoch(trained: nn.Module, epoch: int) -> bool:
        history.train_accuracy.append(1 - error_rate(trained, x, y, output_fn=output_fn))
        if test is not None:
            history.test_accuracy.append(1 - error_rate(trained, *test, output_fn=output_fn))
        if epoch == 0:
            return False
        if validation is not None:
            error = error_rate(trained, *validation, output_fn=output_fn)
            if "error" not in best or error < best["error"]:
                best.update(error=error, state=copy.deepcopy(trained.state_dict()))
                history.best_epoch = epoch
        return stop_at_train_accuracy is not None and history.train_accuracy[-1] >= stop_at_train_accuracy

    run = train_model(
        model,
        (train, None),
        epochs=epochs,
        lr=lr,
        optimizer="adam",
        batch_size=batch_size,
        weight_decay=weight_decay,
        seed=seed,
        loss="cross_entropy",
        augment=augment,
        after_epoch=after_epoch,
        output_fn=output_fn,
    )
    model.load_state_dict(best["state"] if "state" in best else run.model.state_dict())
    model.eval()
    for parameter in model.parameters():
        parameter.grad = None
    return history
