"""Regularisation comparison: how weight decay, dropout, early stopping and augmentation move the
measures and the gap.

Copies of the model are trained from the initial weights with the same budget under each setting:

* ``none``: plain Adam;
* ``weight_decay``: an L2 penalty (Adam's ``weight_decay``);
* ``dropout``: the model's own Dropout modules at probability ``dropout`` (only where the model has
  Dropout modules; otherwise the setting is listed as not defined);
* ``early_stopping``: the epoch with the best error on a held-out 20% of the training set;
* ``augmentation``: random shifts by up to one position along each spatial axis (images and
  sequences only; not defined for tabular inputs).

For each: train and test error, gap, and a few cheap measures (log-product of spectral norms,
Frobenius distance from initialisation, the 10th-percentile margin) from
:func:`deepscope.generalization.measures`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from deepscope import _inputs
from deepscope._validation import check_float
from deepscope.errors import invalid_parameter
from deepscope.generalization.diagnostics._training import check_training, error_rate, fit, fresh_copy
from deepscope.generalization.diagnostics.learning_curves import _classification_split
from deepscope.models.gap import generalization_gap
from deepscope.registry import analysis
from deepscope.results import Result

if TYPE_CHECKING:
    from deepscope.problem import Problem

__all__ = ["RegularisationComparison", "regularisation_comparison", "SETTINGS", "random_shift"]

SETTINGS = ("none", "weight_decay", "dropout", "early_stopping", "augmentation")
_MEASURES = ("log_product_spectral", "frobenius_distance", "margin_10th_percentile")


def random_shift(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Shift each example by −1, 0 or +1 along every spatial axis (zero-filled), ``(batch, C, *spatial)``."""
    out = x
    for axis in range(2, x.ndim):
        shift = int(torch.randint(-1, 2, (1,), generator=generator))
        if shift:
            out = torch.roll(out, shift, dims=axis)
            edge = [slice(None)] * x.ndim
            edge[axis] = slice(0, 1) if shift > 0 else slice(-1, None)
            out[tuple(edge)] = 0.0
    return out


@dataclasses.dataclass(frozen=True)
class RegularisationComparison(Result):
    """One row per setting: errors, gap, measures; settings that are not defined are listed."""

    table: list[dict]
    not_defined: list[str]
    epochs: int

    def rows(self) -> list[dict]:
        return self.table

    def plot(self, ax=None):
        from deepscope._figures import new_figure

        figure, ax = new_figure(4.5, 3.0) if ax is None else (ax.figure, ax)
        names = [row["setting"] for row in self.table]
        ax.bar(range(len(names)), [row["gap"] for row in self.table])
        ax.set_xticks(range(len(names)), names, rotation=30, fontsize=8)
        ax.set_ylabel("test error − train error")
        return figure


def _with_dropout(model: nn.Module, probability: float) -> bool:
    found = False
    for module in model.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd):
            module.p = probability
            found = True
    return found


@analysis(
    takes="problem",
    family="generalization",
    fixture="mlp",
    example_kwargs={"epochs": 1, "settings": ("none", "dropout"), "max_samples": 16},
)
def regularisation_comparison(
    problem: Problem,
    *,
    settings: Sequence[str] = SETTINGS,
    epochs: int = 20,
    lr: float = 1e-3,
    batch_size: int = 64,
    weight_decay: float = 1e-3,
    dropout: float = 0.3,
    max_samples: int | None = 2048,
    seed: int = 0,
) -> RegularisationComparison:
    """Train copies under each regularisation setting and compare gap and measures.

    Args:
        problem: a classification :class:`deepscope.Problem` with test data.
        settings: a subset of "none", "weight_decay", "dropout", "early_stopping", "augmentation".
        epochs, lr, batch_size: the common training budget (Adam, from the initial weights).
        weight_decay, dropout: strengths of those two settings.
        max_samples: cap on training examples.
        seed: seed of training.
    """
    from deepscope.generalization._measures import measures
    from deepscope.problem import Problem

    owner = "regularisation_comparison"
    epochs, lr, batch_size = check_training(owner, epochs=epochs, lr=lr, batch_size=batch_size)
    weight_decay = check_float(weight_decay, "weight_decay", owner, minimum=0.0)
    dropout = check_float(dropout, "dropout", owner, minimum=0.0, maximum=1.0)
    if isinstance(settings, str) or not isinstance(settings, (list, tuple)) or not settings:
        raise invalid_parameter("settings", owner, "a non-empty list: a subset of " + ", ".join(SETTINGS), settings)
    for setting in settings:
        if setting not in SETTINGS:
            raise invalid_parameter(
                "settings", "regularisation_comparison", "a subset of " + ", ".join(SETTINGS), settings
            )
    x, y = _classification_split(problem, "train", max_samples, "regularisation_comparison")
    x_test, y_test = _classification_split(problem, "test", None, "regularisation_comparison")
    table, not_defined = [], []
    for setting in settings:
        model = fresh_copy(problem, seed)
        init = {k: v.detach().clone() for k, v in model.state_dict().items()}
        train, options = (x, y), {}
        if setting == "weight_decay":
            options["weight_decay"] = weight_decay
        elif setting == "dropout":
            if not _with_dropout(model, dropout):
                not_defined.append("dropout (the model has no Dropout module)")
                continue
        elif setting == "early_stopping":
            cut = max(1, len(y) // 5)
            train = (_inputs.slice_rows(x, cut, len(y)), y[cut:])
            options["validation"] = (_inputs.slice_rows(x, 0, cut), y[:cut])
        elif setting == "augmentation":
            if _inputs.is_mapping(x) or not x.is_floating_point():
                not_defined.append("augmentation (named or token-id inputs have no spatial axis to shift)")
                continue
            if x.ndim < 3:
                not_defined.append("augmentation (tabular inputs have no spatial axis to shift)")
                continue
            options["augment"] = random_shift
        output_fn = problem.output_fn
        history = fit(
            model, train, None, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, output_fn=output_fn, **options
        )
        train_error = error_rate(model, *train, output_fn=output_fn)
        test_error = error_rate(model, x_test, y_test, output_fn=output_fn)
        table_row = {
            "setting": setting,
            "train_error": train_error,
            "test_error": test_error,
            "gap": generalization_gap(1 - train_error, 1 - test_error, len(y_test)).gap,  # the one definition
            "epochs_used": history.best_epoch if history.best_epoch is not None else epochs,
        }
        values = measures(
            Problem(model, train, init_state=init, output_fn=output_fn), families=("norm", "margin"), max_samples=512
        )
        table_row.update({name: values.value(name) for name in _MEASURES})
        table.append(table_row)
    return RegularisationComparison(table=table, not_defined=not_defined, epochs=epochs)
