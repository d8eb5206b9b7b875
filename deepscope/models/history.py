"""TrainingHistory and TrainingRun: the results the seeded trainer returns.

``TrainingHistory`` holds per-epoch learning curves (epoch 0 is the model before training),
draws them, and gives the final generalisation gap with its Wilson interval
(:mod:`deepscope.models.gap`). ``TrainingRun`` bundles the trained copy, its initial weights,
the history, the Monitor's result and the settings.

Example:
    >>> history = TrainingHistory([0, 1], [2.3, 0.4], [2.3, 0.5], [0.1, 0.9], [0.1, 0.85], 100, 40, 2)
    >>> round(history.generalization_gap.gap, 2)
    0.05
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from deepscope.models.gap import GapEstimate, generalization_gap
from deepscope.results import Result, to_jsonable

__all__ = ["TrainingHistory", "TrainingRun"]


@dataclasses.dataclass(frozen=True)
class TrainingHistory(Result):
    """Per-epoch learning curves (index 0 is the model before training).

    Attributes:
        epoch: epoch numbers ``0 .. epochs``.
        train_loss, test_loss: mean loss on the whole split, in eval mode (test: None without a test split).
        train_accuracy, test_accuracy: accuracy for classification, None for regression.
        n_train, n_test: split sizes (n_test is 0 without a test split).
        steps: optimizer steps taken.
        monitor: the training Monitor's result, when a monitor was given.
    """

    epoch: list[int]
    train_loss: list[float]
    test_loss: list[float | None]
    train_accuracy: list[float | None]
    test_accuracy: list[float | None]
    n_train: int
    n_test: int
    steps: int
    monitor: Any = None

    def rows(self) -> list[dict[str, Any]]:
        """One row per epoch."""
        return [
            {
                "epoch": e,
                "train_loss": tl,
                "test_loss": vl,
                "train_accuracy": ta,
                "test_accuracy": va,
            }
            for e, tl, vl, ta, va in zip(
                self.epoch, self.train_loss, self.test_loss, self.train_accuracy, self.test_accuracy
            )
        ]

    @property
    def generalization_gap(self) -> GapEstimate | None:
        """Final test error minus train error with a 95% Wilson interval (None without a test split)."""
        if not self.n_test or self.test_loss[-1] is None:
            return None
        return generalization_gap(
            self.train_accuracy[-1],
            self.test_accuracy[-1],
            self.n_test,
            n_train=self.n_train,
            train_loss=self.train_loss[-1],
            test_loss=self.test_loss[-1],
        )

    def plot(self, ax=None):
        """Learning curves: loss (left) and accuracy (right, classification only). Returns the Figure."""
        from deepscope._figures import new_figure

        has_accuracy = self.train_accuracy[0] is not None
        if ax is None:
            figure, axes = new_figure(width=7.0 if has_accuracy else 4.5, height=3.0, ncols=2 if has_accuracy else 1)
            axes = list(axes) if has_accuracy else [axes]
        else:
            figure, axes = ax.figure, [ax]
        panels = [("loss", self.train_loss, self.test_loss)]
        if has_accuracy:
            panels.append(("accuracy", self.train_accuracy, self.test_accuracy))
        for axis, (label, train_values, test_values) in zip(axes, panels):
            axis.plot(self.epoch, train_values, marker="o", markersize=3, label="train")
            if self.n_test:
                axis.plot(self.epoch, test_values, marker="s", markersize=3, label="test")
            axis.set_xlabel("epoch")
            axis.set_ylabel(label)
            axis.grid(alpha=0.3)
            axis.legend()
        return figure


@dataclasses.dataclass(frozen=True)
class TrainingRun(Result):
    """What :func:`train` returns.

    Attributes:
        model: the trained copy, in eval mode, with no ``.grad`` tensors.
        init_state: the copy's ``state_dict`` before the first step (cloned).
        history: the :class:`TrainingHistory`.
        monitor: ``monitor.result()`` when a monitor was given, else None.
        config: the training settings (epochs, lr, optimizer, batch_size, weight_decay, seed, loss, device).
        seconds: wall-clock training time (not part of the reproducible numbers).
    """

    model: nn.Module
    init_state: dict[str, torch.Tensor]
    history: TrainingHistory
    monitor: Any
    config: dict[str, Any]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """Settings, history and monitor (weights are left out: save them with deepscope.io.save_model)."""
        return {
            "config": to_jsonable(self.config),
            "history": self.history.to_dict(),
            "monitor": to_jsonable(self.monitor),
            "seconds": self.seconds,
        }

    def rows(self) -> list[dict[str, Any]]:
        """One row per epoch (the history's table)."""
        return self.history.rows()

    def plot(self, ax=None):
        """The learning curves."""
        return self.history.plot(ax)
