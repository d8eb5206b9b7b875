"""Memorisation probe (Zhang et al. 2017): can a copy of this network fit random labels?

A copy of the model (from its initial weights) is trained on the training inputs with labels
drawn uniformly at random, and another on the true labels, with the same budget. The probe
reports, for each, the epochs needed to reach ``target_accuracy`` on its own labels (None if not
reached) and the final training accuracy. A network that fits random labels almost as fast as the
true ones has the capacity to memorise, so its good test error is not explained by capacity
alone.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import torch

from deepscope._validation import check_float
from deepscope.generalization.diagnostics._training import check_training, fit, fresh_copy
from deepscope.generalization.diagnostics.learning_curves import _classification_split
from deepscope.registry import analysis
from deepscope.results import Result

if TYPE_CHECKING:
    from deepscope.problem import Problem

__all__ = ["MemorisationProbe", "memorisation_probe"]


@dataclasses.dataclass(frozen=True)
class MemorisationProbe(Result):
    """Epochs to fit and final train accuracy with random and with true labels."""

    random_epochs_to_fit: int | None
    random_final_accuracy: float
    true_epochs_to_fit: int | None
    true_final_accuracy: float
    random_curve: list[float]
    true_curve: list[float]
    chance_accuracy: float
    target_accuracy: float
    epochs: int
    n: int

    def summary(self) -> str:
        if self.random_epochs_to_fit is not None:
            return (
                f"A copy fit random labels to {self.target_accuracy:.0%} train accuracy in {self.random_epochs_to_fit} "
                f"epochs (true labels: {self.true_epochs_to_fit}); the network can memorise this training set."
            )
        return (
            f"In {self.epochs} epochs a copy reached {self.random_final_accuracy:.1%} train accuracy on random labels "
            f"(chance {self.chance_accuracy:.1%}) vs {self.true_final_accuracy:.1%} on the true labels."
        )

    def rows(self) -> list[dict]:
        return [
            {
                "labels": "random",
                "epochs_to_fit": self.random_epochs_to_fit,
                "final_train_accuracy": self.random_final_accuracy,
            },
            {
                "labels": "true",
                "epochs_to_fit": self.true_epochs_to_fit,
                "final_train_accuracy": self.true_final_accuracy,
            },
        ]

    def plot(self, ax=None):
        from deepscope._figures import new_figure

        figure, ax = new_figure(4.5, 3.0) if ax is None else (ax.figure, ax)
        ax.plot(range(len(self.true_curve)), self.true_curve, marker="o", label="true labels")
        ax.plot(range(len(self.random_curve)), self.random_curve, marker="s", label="random labels")
        ax.axhline(self.chance_accuracy, color="gray", linestyle=":", label="chance")
        ax.set_xlabel("epoch")
        ax.set_ylabel("train accuracy")
        ax.legend()
        return figure


def _epochs_to(curve: list[float], target: float) -> int | None:
    return next((epoch for epoch, accuracy in enumerate(curve) if accuracy >= target), None)


@analysis(takes="problem", family="generalization", fixture="mlp", example_kwargs={"epochs": 2, "max_samples": 16})
def memorisation_probe(
    problem: Problem,
    *,
    epochs: int = 50,
    lr: float = 1e-3,
    batch_size: int = 64,
    target_accuracy: float = 0.99,
    max_samples: int | None = 512,
    seed: int = 0,
) -> MemorisationProbe:
    """Train copies on random and on true labels; report epochs to fit and final train accuracy.

    Args:
        problem: a classification :class:`deepscope.Problem`.
        epochs: the training budget of each copy (training stops once ``target_accuracy`` is reached).
        lr, batch_size: Adam's step size and the minibatch size.
        target_accuracy: train accuracy that counts as "fit".
        max_samples: training examples used (memorising is slow: keep it small).
        seed: seed of the random labels and of training.
    """
    epochs, lr, batch_size = check_training("memorisation_probe", epochs=epochs, lr=lr, batch_size=batch_size)
    target_accuracy = check_float(target_accuracy, "target_accuracy", "memorisation_probe", minimum=0.0, maximum=1.0)
    x, y = _classification_split(problem, "train", max_samples, "memorisation_probe")
    classes = problem.num_classes
    random_labels = torch.randint(0, classes, (len(y),), generator=torch.Generator().manual_seed(seed)).to(y.device)
    curves = {}
    for name, labels in (("random", random_labels), ("true", y)):
        history = fit(
            fresh_copy(problem, seed),
            (x, labels),
            None,
            epochs=epochs,
            lr=lr,
            batch_size=batch_size,
            seed=seed,
            stop_at_train_accuracy=target_accuracy,
            output_fn=problem.output_fn,
        )
        curves[name] = history.train_accuracy
    return MemorisationProbe(
        random_epochs_to_fit=_epochs_to(curves["random"], target_accuracy),
        random_final_accuracy=curves["random"][-1],
        true_epochs_to_fit=_epochs_to(curves["true"], target_accuracy),
        true_final_accuracy=curves["true"][-1],
        random_curve=curves["random"],
        true_curve=curves["true"],
        chance_accuracy=float(torch.bincount(random_labels, minlength=classes).max()) / len(y),
        target_accuracy=target_accuracy,
        epochs=epochs,
        n=len(y),
    )
