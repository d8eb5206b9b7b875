"""Label-noise sensitivity: how the gap grows when a fraction of the training labels is wrong.

For each noise level ρ a copy is trained (from the initial weights) on the training set with a
fraction ρ of labels replaced by a different class chosen at random; the train accuracy on the
noisy labels, the test accuracy on clean test labels and the gap are reported. A network that
reaches high train accuracy at high ρ is memorising the wrong labels (Zhang et al. 2017; Arpit et
al. 2017).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from deepscope._validation import check_float_sequence
from deepscope.generalization.diagnostics._training import check_training, error_rate, fit, fresh_copy
from deepscope.generalization.diagnostics.learning_curves import _classification_split
from deepscope.models.gap import generalization_gap
from deepscope.registry import analysis
from deepscope.results import Result

if TYPE_CHECKING:
    from deepscope.problem import Problem

__all__ = ["LabelNoiseSensitivity", "label_noise_sensitivity", "corrupt_labels"]


def corrupt_labels(y: torch.Tensor, fraction: float, classes: int, generator: torch.Generator) -> torch.Tensor:
    """A copy of ``y`` with exactly ``round(fraction · n)`` labels moved to another class (uniformly)."""
    noisy = y.clone()
    count = int(round(fraction * len(y)))
    index = torch.randperm(len(y), generator=generator)[:count].to(y.device)
    shift = torch.randint(1, classes, (count,), generator=generator).to(y.device)
    noisy[index] = (y[index] + shift) % classes
    return noisy


@dataclasses.dataclass(frozen=True)
class LabelNoiseSensitivity(Result):
    """Train accuracy (noisy labels), test accuracy (clean labels) and gap per noise level."""

    table: list[dict]
    epochs: int

    def rows(self) -> list[dict]:
        return self.table

    def plot(self, ax=None):
        from deepscope._figures import new_figure

        figure, ax = new_figure(4.5, 3.0) if ax is None else (ax.figure, ax)
        levels = [row["noise"] for row in self.table]
        ax.plot(levels, [row["train_accuracy"] for row in self.table], marker="o", label="train (noisy labels)")
        ax.plot(levels, [row["test_accuracy"] for row in self.table], marker="s", label="test (clean labels)")
        ax.set_xlabel("fraction of corrupted training labels")
        ax.set_ylabel("accuracy")
        ax.legend()
        return figure


@analysis(takes="problem", family="generalization", fixture="mlp", example_kwargs={"epochs": 1, "levels": (0.0, 0.5)})
def label_noise_sensitivity(
    problem: Problem,
    *,
    levels: Sequence[float] = (0.0, 0.2, 0.4),
    epochs: int = 20,
    lr: float = 1e-3,
    batch_size: int = 64,
    max_samples: int | None = 2048,
    seed: int = 0,
) -> LabelNoiseSensitivity:
    """Retrain copies with a fraction of corrupted labels; report accuracies and gap per level."""
    owner = "label_noise_sensitivity"
    epochs, lr, batch_size = check_training(owner, epochs=epochs, lr=lr, batch_size=batch_size)
    levels = check_float_sequence(levels, "levels", owner, minimum=0.0, maximum=1.0)
    x, y = _classification_split(problem, "train", max_samples, "label_noise_sensitivity")
    x_test, y_test = _classification_split(problem, "test", None, "label_noise_sensitivity")
    generator = torch.Generator().manual_seed(seed)
    table = []
    for level in levels:
        noisy = corrupt_labels(y, level, problem.num_classes, generator)
        model = fresh_copy(problem, seed)
        fit(
            model, (x, noisy), None, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, output_fn=problem.output_fn
        )
        train_accuracy = 1 - error_rate(model, x, noisy, output_fn=problem.output_fn)
        test_accuracy = 1 - error_rate(model, x_test, y_test, output_fn=problem.output_fn)
        table.append(
            {
                "noise": level,
                "train_accuracy": train_accuracy,
                "clean_train_accuracy": 1 - error_rate(model, x, y, output_fn=problem.output_fn),
                "test_accuracy": test_accuracy,
                "gap": generalization_gap(train_accuracy, test_accuracy, len(y_test)).gap,  # the one definition
            }
        )
    return LabelNoiseSensitivity(table=table, epochs=epochs)
