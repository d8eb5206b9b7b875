"""A tiny, seeded training loop on a deep copy, shared by the diagnostics.

The diagnostics need things the general trainer does not do (stop once the training set is fit,
per-example label corruption, augmentation, early stopping on a validation split), so they use
this loop. It always trains a deep copy, restarted from the Problem's ``init_state`` when given
(else re-initialised with ``reset_parameters``), and never touches the caller's model.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import nn

from deepscope._validation import check_float, check_int

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
    """A deep copy of the model at its initial weights (``init_state``), or re-initialised."""
    clone = copy.deepcopy(problem.model)
    for module in clone.modules():  # the caller's hooks stay with the caller's model
        module._forward_hooks.clear()
        module._forward_pre_hooks.clear()
    for parameter in clone.parameters():
        parameter.grad = None
        parameter.requires_grad_(True)
    if problem.init_state is not None:
        clone.load_state_dict({k: v for k, v in problem.init_state.items()}, strict=False)
    else:
        with torch.random.fork_rng(devices=[]):  # the caller's global RNG stream is left as it was
            torch.manual_seed(seed)
            for module in clone.modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
    return clone


def error_rate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: int = 2048) -> float:
    """0-1 error of ``model`` (eval mode) on ``(x, y)``."""
    was_training = model.training
    model.eval()
    wrong = 0
    with torch.no_grad():
        for start in range(0, len(x), chunk):
            wrong += int((model(x[start : start + chunk]).argmax(-1) != y[start : start + chunk]).sum())
    model.train(was_training)
    return wrong / max(len(x), 1)


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
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor] | None,
    *,
    epochs: int,
    lr: float,
    batch_size: int = 64,
    weight_decay: float = 0.0,
    seed: int = 0,
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    stop_at_train_accuracy: float | None = None,
    validation: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> FitHistory:
    """Adam on cross-entropy; records accuracies each epoch; optional early stop or best-on-validation."""
    with torch.random.fork_rng(devices=[]):  # Dropout draws from the global RNG: keep the caller's stream
        return _fit(
            model, train, test, epochs, lr, batch_size, weight_decay, seed, augment, stop_at_train_accuracy, validation
        )


def _fit(model, train, test, epochs, lr, batch_size, weight_decay, seed, augment, stop_at_train_accuracy, validation):
    generator = torch.Generator(device="cpu").manual_seed(seed)
    torch.manual_seed(seed)  # Dropout masks
    x, y = train
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    history = FitHistory([1 - error_rate(model, x, y)], [], model)
    if test is not None:
        history.test_accuracy.append(1 - error_rate(model, *test))
    best_error, best_state = None, None
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(x), generator=generator).to(x.device)
        for start in range(0, len(x), batch_size):
            index = order[start : start + batch_size]
            if len(index) < 2:
                continue  # BatchNorm cannot train on one example
            inputs = x[index] if augment is None else augment(x[index], generator)
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(inputs), y[index]).backward()
            optimizer.step()
        model.eval()
        history.train_accuracy.append(1 - error_rate(model, x, y))
        if test is not None:
            history.test_accuracy.append(1 - error_rate(model, *test))
        if validation is not None:
            error = error_rate(model, *validation)
            if best_error is None or error < best_error:
                best_error, best_state, history.best_epoch = error, copy.deepcopy(model.state_dict()), epoch
        if stop_at_train_accuracy is not None and history.train_accuracy[-1] >= stop_at_train_accuracy:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    for parameter in model.parameters():
        parameter.grad = None
    return history
