"""DataSource: one split of data as ``(inputs, targets)`` batches, whatever form the user holds it in.

Inputs are a tensor whose first dimension is the batch (images, one-hot DNA, integer token ids) or
a dict of such tensors (``{"input_ids": ..., "attention_mask": ...}``, as HuggingFace models take
them); :mod:`deepscope._inputs` moves, slices and joins both kinds, so integer ids are never cast
to float. Used by :class:`deepscope.Problem` (which re-exports it) and by the audit.

Example:
    >>> ids = torch.randint(0, 10, (6, 4))
    >>> source = DataSource(({"input_ids": ids, "attention_mask": torch.ones(6, 4)}, torch.zeros(6)))
    >>> x, y = next(source.batches(4, dtype=torch.float64))
    >>> x["input_ids"].dtype, x["attention_mask"].dtype
    (torch.int64, torch.float64)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from deepscope import _inputs
from deepscope._inputs import Inputs
from deepscope._validation import check_int
from deepscope.errors import DataError, invalid_parameter

__all__ = ["DataSource", "as_tensor", "check_masks"]

_LABEL_KEYS = ("labels", "label")
_MASK_KEYS = ("attention_mask", "token_type_ids")


def as_tensor(value: Any, what: str) -> torch.Tensor:
    """``value`` as a tensor (numpy arrays without a copy); DataError naming ``what`` otherwise."""
    if isinstance(value, torch.Tensor):
        return value
    try:
        if isinstance(value, np.ndarray):
            return torch.from_numpy(np.ascontiguousarray(value))
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as error:
        kind = f"an array of dtype {value.dtype}" if isinstance(value, np.ndarray) else type(value).__name__
        raise DataError(f"{what} must be a numeric tensor or array. Got {kind} instead.") from error


def _as_inputs(value: Any, what: str) -> Inputs:
    if isinstance(value, Mapping):
        if not value:
            raise DataError(f"{what} are an empty dict: at least one named tensor is needed.")
        return {str(name): as_tensor(item, f"{what}[{name!r}]") for name, item in value.items()}
    return as_tensor(value, what)


def check_masks(inputs: Inputs, where: str = "") -> None:
    """A dict's ``attention_mask``/``token_type_ids`` must have the shape of its ``input_ids``.

    A 2-D mask must equal the ids' shape; a mask of another rank (HF's 4-D ``(n, 1, q, k)``)
    must end in the sequence length.
    """
    if not _inputs.is_mapping(inputs) or "input_ids" not in inputs:
        return
    ids = inputs["input_ids"]  # type: ignore[index]
    for key in _MASK_KEYS:
        mask = inputs.get(key)  # type: ignore[union-attr]
        if mask is None:
            continue
        same = tuple(mask.shape) == tuple(ids.shape) if mask.ndim == ids.ndim else mask.shape[-1] == ids.shape[-1]
        if not same:
            raise DataError(
                f"The {key} must have the shape of the input_ids: got {key} of shape {tuple(mask.shape)} and "
                f"input_ids of shape {tuple(ids.shape)}{where}. Pad both to the same length."
            )


def _check_finite(inputs: Inputs, message: str) -> None:
    for value in _inputs.floating(inputs):
        if not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).reshape(len(value), -1).any(dim=1).sum())
            raise DataError(message.format(bad=bad))


class DataSource:
    """One split of data: ``(X, y)`` tensors, a ``torch.utils.data.Dataset`` or a ``DataLoader``.

    ``X`` is a tensor or a dict of tensors with the same first dimension (``{"input_ids": ...,
    "attention_mask": ...}``); a Dataset/DataLoader yields ``(x, y)`` pairs of those kinds. A dict
    with the targets under ``"labels"``/``"label"`` (HuggingFace's batches) stands for the pair of
    the other entries and the targets, whole or as the batches of a loader. Iterates in fixed order (no shuffling; a
    shuffling DataLoader is iterated as it comes), moves batches to the requested device (floating
    tensors cast to ``dtype``; integer ids and masks keep their dtype), and checks each batch for
    non-finite inputs, masks that do not fit the ids and — through ``target_check`` and
    ``input_check``, which :class:`~deepscope.Problem` sets — targets and token ids, so a bad
    batch late in a loader is caught by every consumer. Every batch is a copy: a model that works
    in place never changes the caller's tensors.
    """

    def __init__(self, data: Any, *, name: str = "train", batch_size: int = 256) -> None:
        self.name = name
        self.batch_size = batch_size
        # called as check(y_or_x, where) on each batch of a Dataset/DataLoader (tensor data are
        # checked once, whole, by Problem); raise DataError
        self.target_check: Callable[[torch.Tensor, str], None] | None = None
        self.input_check: Callable[[Inputs, str], None] | None = None
        self.x: Inputs | None = None
        self.y: torch.Tensor | None = None
        self.loader: DataLoader | None = None
        if isinstance(data, DataLoader):
            self.loader = data
        elif isinstance(data, TorchDataset):
            self.loader = DataLoader(data, batch_size=batch_size, shuffle=False)
        elif isinstance(data, (tuple, list)) and len(data) == 2:
            self.x, self.y = self._pair(data[0], data[1])
        elif isinstance(data, Mapping) and any(key in data for key in _LABEL_KEYS):  # {"input_ids", "labels"}
            key = next(key for key in _LABEL_KEYS if key in data)
            self.x, self.y = self._pair({name: value for name, value in data.items() if name != key}, data[key])
        else:
            raise invalid_parameter(
                name,
                "Problem",
                "a pair (X, y) of tensors or arrays (X may be a dict of them), a dict with 'labels', "
                "a torch Dataset or a DataLoader",
                data,
                cls=DataError,
            )
        if len(self) == 0:
            raise DataError(f"The {name} data is empty: at least one example is needed.")

    def _pair(self, raw_x: Any, raw_y: Any) -> tuple[Inputs, torch.Tensor]:
        name = self.name
        x = _as_inputs(raw_x, f"The {name} inputs")
        y = as_tensor(raw_y, f"The {name} targets")
        if _inputs.is_mapping(x):
            n = _inputs.batch_length(x, f"{name} inputs")
            if y.ndim == 0 or n != len(y):
                raise DataError(
                    f"The {name} data must have as many targets as inputs. Got inputs {_inputs.describe(x)} "
                    f"with {n} example(s) and targets of shape {tuple(y.shape)}."
                )
            check_masks(x, f" (the {name} data)")
        elif x.ndim == 0 or y.ndim == 0 or len(x) != len(y):  # type: ignore[union-attr]
            raise DataError(
                f"The {name} data must have as many targets as inputs. "
                f"Got inputs of shape {tuple(x.shape)} and targets of shape {tuple(y.shape)}."  # type: ignore[union-attr]
            )
        _check_finite(x, f"The {name} inputs contain NaN or infinite values in {{bad}} example(s).")
        if y.is_floating_point() and not bool(torch.isfinite(y).all()):
            raise DataError(f"The {name} targets contain NaN or infinite values.")
        return x, y

    def __len__(self) -> int:
        if self.x is not None:
            return _inputs.batch_length(self.x)
        dataset = getattr(self.loader, "dataset", None)
        try:
            return len(dataset)  # type: ignore[arg-type]
        except TypeError:
            return sum(_inputs.batch_length(x) for x, _ in self._raw_batches(self.batch_size))

    def batches(
        self,
        batch_size: int | None = None,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        max_samples: int | None = None,
    ) -> Iterator[tuple[Inputs, torch.Tensor]]:
        """Yield ``(x, y)`` batches in order, on ``device``, floats cast to ``dtype``; at most ``max_samples``."""
        if batch_size is not None:
            batch_size = check_int(_plain_int(batch_size), "batch_size", "Problem.batches", minimum=1)
        if max_samples is not None:
            max_samples = check_int(_plain_int(max_samples), "max_samples", "Problem.batches", minimum=1)
        seen = 0
        limit = len(self) if max_samples is None else min(max_samples, len(self))
        for index, (x, y) in enumerate(self._raw_batches(batch_size or self.batch_size)):
            if seen >= limit:
                return
            length = _inputs.batch_length(x, f"{self.name} inputs")
            if seen + length > limit:
                x, y = _inputs.slice_rows(x, 0, limit - seen), y[: limit - seen]
                length = limit - seen
            seen += length
            if self.x is None:
                where = f" (batch {index} of the {self.name} data)"
                _check_finite(x, f"Batch {index} of the {self.name} data contains NaN or infinite inputs.")
                check_masks(x, where)
                if self.input_check is not None:
                    self.input_check(x, where)
                if self.target_check is not None:
                    self.target_check(y, where)
            yield _inputs.move(x, device, dtype, copy=True), y.to(device=device, copy=True)

    def _raw_batches(self, batch_size: int) -> Iterator[tuple[Inputs, torch.Tensor]]:
        if self.x is not None and self.y is not None:
            for start in range(0, len(self.y), batch_size):
                yield _inputs.slice_rows(self.x, start, start + batch_size), self.y[start : start + batch_size]
            return
        for batch in self.loader:  # type: ignore[union-attr]
            if isinstance(batch, Mapping) and any(key in batch for key in _LABEL_KEYS):
                key = next(key for key in _LABEL_KEYS if key in batch)
                batch = ({name: value for name, value in batch.items() if name != key}, batch[key])
            if not isinstance(batch, (tuple, list)) or len(batch) < 2:
                raise DataError(
                    f"Each batch of the {self.name} data must be a pair (x, y) or a dict with 'labels'. "
                    f"Got {type(batch).__name__}."
                )
            x = _as_inputs(batch[0], f"The {self.name} inputs")
            y = as_tensor(batch[1], f"The {self.name} targets")
            if y.ndim == 0 or _inputs.batch_length(x, f"{self.name} inputs") != len(y):
                raise DataError(
                    f"A batch of the {self.name} data has inputs {_inputs.describe(x)} with "
                    f"{_inputs.batch_length(x)} example(s) and targets of shape {tuple(y.shape)}."
                )
            yield x, y

    def tensors(
        self,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        max_samples: int | None = None,
    ) -> tuple[Inputs, torch.Tensor]:
        """All (or the first ``max_samples``) examples: inputs of the data's kind (a dict stays a dict), targets."""
        xs, ys = zip(*self.batches(device=device, dtype=dtype, max_samples=max_samples))
        return _inputs.concatenate(list(xs)), torch.cat(ys)


def _plain_int(value: Any) -> Any:
    return int(value) if isinstance(value, np.integer) else value
