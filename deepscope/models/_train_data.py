"""The trainer's data: ``(X, y)`` pairs checked, moved and fed to the model, whatever the kind of ``X``.

``X`` is a float tensor, integer token ids (never cast to float) or a dict of named tensors
(``model(**X)``), handled through :mod:`deepscope._inputs`; the model's scores are its output, or
what ``output_fn`` picks from a tuple, dict or ``ModelOutput`` (:func:`deepscope._outputs.select_output`).

Example:
    >>> x, y = {"ids": torch.tensor([[1, 2], [3, 4]])}, torch.tensor([0, 1])
    >>> check_split(x, y, "train", "classification")  # named integer inputs pass as they are
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from deepscope import _inputs
from deepscope._outputs import OutputFn, select_output
from deepscope.data._base import DatasetSplits
from deepscope.errors import DataError, invalid_parameter

__all__ = ["check_split", "on_device", "scores", "unpack"]


def unpack(dataset: Any) -> tuple[Any, torch.Tensor, Any, torch.Tensor | None, str]:
    """``(x_train, y_train, x_test, y_test, task)`` from a DatasetSplits or ``((X, y), (X, y) | None)``."""
    if isinstance(dataset, DatasetSplits):
        has_test = len(dataset.x_test) > 0
        return (
            dataset.x_train,
            dataset.y_train,
            dataset.x_test if has_test else None,
            dataset.y_test if has_test else None,
            dataset.task,
        )
    expected = "a DatasetSplits or a pair ((X_train, y_train), (X_test, y_test) or None)"
    if not isinstance(dataset, (tuple, list)) or len(dataset) != 2:
        raise invalid_parameter("dataset", "train", expected, dataset, cls=DataError)
    train_pair, test_pair = dataset
    if isinstance(train_pair, torch.Tensor) or not isinstance(train_pair, (tuple, list)) or len(train_pair) != 2:
        raise invalid_parameter("dataset", "train", expected, dataset, cls=DataError)
    if test_pair is not None and (not isinstance(test_pair, (tuple, list)) or len(test_pair) != 2):
        raise invalid_parameter("dataset", "train", expected, dataset, cls=DataError)
    x_train, y_train = (_tensor(v, f"train {w}") for v, w in zip(train_pair, ("inputs", "targets")))
    x_test = y_test = None
    if test_pair is not None:
        x_test, y_test = (_tensor(v, f"test {w}") for v, w in zip(test_pair, ("inputs", "targets")))
    task = "classification" if not y_train.is_floating_point() else "regression"
    return x_train, y_train, x_test, y_test, task


def _tensor(value: Any, what: str) -> Any:
    if _inputs.is_mapping(value):  # named inputs ({"input_ids": ..., "attention_mask": ...}): each a tensor
        return {name: _tensor(item, f"{what}[{name!r}]") for name, item in value.items()}
    try:
        return value if isinstance(value, torch.Tensor) else torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as error:
        raise DataError(f"The {what} must be a tensor or an array. Got {type(value).__name__} instead.") from error


def check_split(x: Any, y: torch.Tensor, split: str, task: str) -> None:
    n = _inputs.batch_length(x, f"{split} inputs")
    if n != len(y):
        raise DataError(f"The {split} data has {n} inputs but {len(y)} targets.")
    if n == 0:
        raise DataError(f"The {split} data is empty: at least one example is needed.")
    if not _inputs.is_mapping(x) and (x.is_complex() or x.dtype == torch.bool):  # a dict may hold a bool mask
        raise DataError(
            f"The {split} inputs must be floating point (or integer token ids for an embedding). Got dtype {x.dtype}."
        )
    for value in _inputs.floating(x):
        if not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).reshape(n, -1).any(dim=1).sum())
            raise DataError(f"The {split} inputs contain NaN or infinite values in {bad} example(s).")
    if task == "classification" and (y.is_floating_point() or y.is_complex()):
        raise DataError(f"The {split} labels must be integers for classification. Got dtype {y.dtype}.")
    if y.is_floating_point() and not bool(torch.isfinite(y).all()):
        raise DataError(f"The {split} targets contain NaN or infinite values.")


def on_device(x: Any, device: torch.device, dtype: torch.dtype) -> Any:
    """Inputs on the training device; floating inputs in the model's dtype, integer token ids unchanged."""
    return _inputs.move(x, device, dtype, copy=False)


def scores(model: nn.Module, x: Any, output_fn: OutputFn | None) -> torch.Tensor:
    """``output_fn(model(x))`` (``model(**x)`` for named inputs); a non-tensor output without it is refused."""
    output = _inputs.call_model(model, x)
    if output_fn is None and not isinstance(output, torch.Tensor):
        raise DataError(
            f"The model must return a tensor. Got {type(output).__name__}: pass "
            "output_fn=lambda out: out.logits (or out[0], out['logits']) to pick the scores."
        )
    return select_output(output, output_fn, "train")
