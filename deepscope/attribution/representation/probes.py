"""Linear probes per layer: how linearly decodable is the label at each depth? (Alain & Bengio 2016)

For each layer l, a multinomial logistic regression is fitted on standardised activations
h_l(x) of a training split and scored on a held-out split; the test accuracy as a function of
depth shows where the label becomes linearly available. A probe's accuracy is a lower bound on
the information a linear read-out can extract; the majority-class accuracy of the test split is
reported as the chance level.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

from deepscope._validation import check_float, check_int
from deepscope.attribution._base import guard_note
from deepscope.attribution.representation._activations import check_inputs, check_layers, collect_activations
from deepscope.errors import invalid_parameter
from deepscope.registry import analysis
from deepscope.results import Result

__all__ = ["ProbeAccuracies", "linear_probes"]


@dataclasses.dataclass(frozen=True)
class ProbeAccuracies(Result):
    """Linear-probe accuracy by depth.

    Attributes:
        layers: "input" then the probed module names, in order. dimensions: features per layer.
        train_accuracy, test_accuracy: per layer. chance: majority-class accuracy on the test split.
        n_train, n_test: split sizes.
    """

    layers: list[str]
    dimensions: list[int]
    train_accuracy: list[float]
    test_accuracy: list[float]
    chance: float
    n_train: int
    n_test: int
    note: str = ""

    def rows(self) -> list[dict[str, Any]]:
        return [
            {"depth": i, "layer": name, "features": d, "train_accuracy": tr, "test_accuracy": te}
            for i, (name, d, tr, te) in enumerate(
                zip(self.layers, self.dimensions, self.train_accuracy, self.test_accuracy)
            )
        ]

    def plot(self, ax=None):  # -> matplotlib.figure.Figure
        """Train and test probe accuracy against depth, with the chance level."""
        from deepscope._figures import new_figure

        figure, ax = new_figure(5.0, 3.0) if ax is None else (ax.figure, ax)
        depth = list(range(len(self.layers)))
        ax.plot(depth, self.test_accuracy, marker="o", label="test")
        ax.plot(depth, self.train_accuracy, marker="s", linestyle=":", label="train")
        ax.axhline(self.chance, color="gray", linestyle="--", linewidth=0.8, label="chance")
        ax.set_xticks(depth, self.layers, rotation=45, ha="right")
        ax.set_ylabel("linear probe accuracy")
        ax.set_ylim(0, 1.02)
        ax.legend()
        return figure


def _fit_probe(train_x: np.ndarray, train_y: np.ndarray, regularisation: float, max_iter: int):
    """A standardised logistic regression (or the majority class when only one class is present)."""
    from sklearn.dummy import DummyClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(np.unique(train_y)) < 2:
        return DummyClassifier(strategy="most_frequent").fit(train_x, train_y)
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=regularisation, max_iter=max_iter))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings: the accuracy is still a valid lower bound
        return probe.fit(train_x, train_y)


@analysis(
    takes="model_inputs", family="attribution", fixture="mlp", example_kwargs={"labels": torch.tensor([0, 1] * 4)}
)
def linear_probes(
    model: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    *,
    layers: list[str] | None = None,
    include_input: bool = True,
    test_fraction: float = 0.3,
    regularisation: float = 1.0,
    max_iter: int = 500,
    seed: int = 0,
    max_batch: int = 1024,
) -> ProbeAccuracies:
    """Fit a linear probe (logistic regression) on each layer's activations; accuracy by depth.

    Args:
        model: any module. inputs: ``(n, *features)``. labels: ``(n,)`` integer classes.
        layers: module names (default: every leaf module except Dropout/Identity, input side first).
        include_input: also probe the raw inputs (depth 0).
        test_fraction: held-out share (at least one example on each side).
        regularisation: inverse L2 strength C of scikit-learn's LogisticRegression.
        max_iter: solver iterations. seed: seed of the split. max_batch: rows per forward pass.

    Returns:
        :class:`ProbeAccuracies`.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        >>> x = torch.randn(60, 2)
        >>> result = linear_probes(net, x, (x[:, 0] > 0).long())
        >>> result.layers
        ['input', '0', '1', '2']
    """
    owner = "linear_probes"
    x = check_inputs(model, inputs, owner)
    if (
        not isinstance(labels, torch.Tensor)
        or labels.shape != (x.shape[0],)
        or labels.is_floating_point()
        or labels.is_complex()
    ):
        raise invalid_parameter("labels", owner, f"an integer tensor of shape ({x.shape[0]},)", labels)
    test_fraction = check_float(test_fraction, "test_fraction", owner, minimum=0.0, maximum=1.0, strict_minimum=True)
    regularisation = check_float(regularisation, "regularisation", owner, minimum=0.0, strict_minimum=True)
    max_iter = check_int(max_iter, "max_iter", owner, minimum=1)
    names = check_layers(model, layers, owner)
    n = x.shape[0]
    if n < 2:
        raise invalid_parameter("inputs", owner, "at least 2 examples (a train and a test split)", inputs)
    n_test = min(n - 1, max(1, round(test_fraction * n)))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    test_index, train_index = order[:n_test].numpy(), order[n_test:].numpy()
    y = labels.detach().cpu().numpy()
    activations = collect_activations(model, x, names, max_batch=max_batch)
    if include_input:
        activations = {"input": x.detach().reshape(n, -1).to("cpu", torch.float64), **activations}
    dimensions, train_accuracy, test_accuracy = [], [], []
    for features in activations.values():
        array = features.numpy()
        probe = _fit_probe(array[train_index], y[train_index], regularisation, max_iter)
        dimensions.append(int(array.shape[1]))
        train_accuracy.append(float((probe.predict(array[train_index]) == y[train_index]).mean()))
        test_accuracy.append(float((probe.predict(array[test_index]) == y[test_index]).mean()))
    _, counts = np.unique(y[test_index], return_counts=True)
    return ProbeAccuracies(
        layers=list(activations),
        dimensions=dimensions,
        train_accuracy=train_accuracy,
        test_accuracy=test_accuracy,
        chance=float(counts.max() / n_test),
        n_train=int(len(train_index)),
        n_test=int(n_test),
        note=guard_note(model),
    )
