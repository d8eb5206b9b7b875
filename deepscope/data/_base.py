"""DatasetSplits: the container every built-in or user dataset is returned in."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from deepscope.errors import DataError, invalid_parameter

__all__ = ["DatasetSplits"]


@dataclasses.dataclass(frozen=True, eq=False)
class DatasetSplits:
    """Train and test splits of one dataset, with optional planted ground truth.

    Attributes:
        name: dataset name ("digits", "planted_image", a file name, ...).
        x_train, y_train, x_test, y_test: tensors; ``x`` is float32 ``(n, *input_shape)``;
            ``y`` is int64 ``(n,)`` for classification or float32 ``(n,)``/``(n, k)`` for regression.
        task: "classification" or "regression".
        num_classes: number of classes (classification) or None.
        mask_train, mask_test: ground-truth relevance masks shaped like ``x`` (1 where the label
            signal lives), for the planted datasets; None otherwise.
        feature_names: names of tabular features, when known.
        description: one sentence of provenance (source, seed, sizes).
        info: any generator parameters worth recording (seed, motif positions, ...).
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    task: str = "classification"
    num_classes: int | None = None
    mask_train: torch.Tensor | None = None
    mask_test: torch.Tensor | None = None
    feature_names: tuple[str, ...] | None = None
    description: str = ""
    info: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            for field, value in ((f"x_{split}", x), (f"y_{split}", y)):
                if not isinstance(value, torch.Tensor) or value.ndim == 0:
                    raise invalid_parameter(
                        field,
                        "DatasetSplits",
                        "a tensor with a leading examples dimension (torch.as_tensor(...))",
                        value,
                    )
            if len(x) != len(y):
                raise DataError(f"Dataset '{self.name}': x_{split} has {len(x)} rows but y_{split} has {len(y)}.")
        if len(self.x_train) == 0:
            raise DataError(f"Dataset '{self.name}' has an empty training split.")

    @property
    def train(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x_train, y_train)``."""
        return self.x_train, self.y_train

    @property
    def test(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x_test, y_test)``."""
        return self.x_test, self.y_test

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input example."""
        return tuple(self.x_train.shape[1:])

    @property
    def has_ground_truth(self) -> bool:
        return self.mask_train is not None

    def summary(self) -> dict[str, Any]:
        """Sizes and shapes, for reports and the CLI."""
        return {
            "name": self.name,
            "task": self.task,
            "train_size": len(self.x_train),
            "test_size": len(self.x_test),
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "ground_truth": self.has_ground_truth,
        }
