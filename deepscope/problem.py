"""Problem: a model, its loss, its data and (optionally) its initial weights.

Most analyses need the same four things; a Problem holds them, validates them once, and offers
batched, device-aware iteration and a functional view of the parameters
(``torch.func.functional_call``), so analyses never have to touch the caller's module.

Example:
    >>> import torch
    >>> net = torch.nn.Linear(3, 2)
    >>> problem = Problem(net, (torch.randn(10, 3), torch.randint(0, 2, (10,))))
    >>> problem.evaluate().n
    10
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from deepscope._finite import check_finite_model
from deepscope._forward import first_forward
from deepscope._validation import check_int
from deepscope.data._base import DatasetSplits
from deepscope.data._checks import check_targets_fit
from deepscope.errors import DataError, invalid_parameter
from deepscope.guard import model_guard

__all__ = ["Problem", "DataSource", "Evaluation", "LOSSES", "resolve_loss"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _cross_entropy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(output, target)


def _mse(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return nn.functional.mse_loss(output, target.reshape(output.shape).to(output.dtype))


def _bce_with_logits(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return nn.functional.binary_cross_entropy_with_logits(output, target.reshape(output.shape).to(output.dtype))


def _nll(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return nn.functional.nll_loss(output, target)


LOSSES: dict[str, LossFn] = {
    "cross_entropy": _cross_entropy,
    "mse": _mse,
    "bce_with_logits": _bce_with_logits,
    "nll": _nll,
}
_CLASSIFICATION_LOSSES = ("cross_entropy", "nll")


def resolve_loss(loss: str | LossFn, owner: str = "Problem") -> tuple[str, LossFn]:
    """Return ``(name, function)`` for a loss given by name or as a callable ``(output, target) -> scalar``."""
    if isinstance(loss, str):
        if loss not in LOSSES:
            raise invalid_parameter("loss", owner, "one of " + ", ".join(map(repr, LOSSES)) + " or a callable", loss)
        return loss, LOSSES[loss]
    if callable(loss):
        return getattr(loss, "__name__", type(loss).__name__), loss
    raise invalid_parameter("loss", owner, "a loss name or a callable (output, target) -> scalar", loss)


def _as_tensor(value: Any, what: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    try:
        if isinstance(value, np.ndarray):
            return torch.from_numpy(np.ascontiguousarray(value))
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as error:
        kind = f"an array of dtype {value.dtype}" if isinstance(value, np.ndarray) else type(value).__name__
        raise DataError(f"{what} must be a numeric tensor or array. Got {kind} instead.") from error


def _plain_int(value: Any) -> Any:
    return int(value) if isinstance(value, np.integer) else value


def _as_device(device: Any) -> torch.device:
    try:
        return torch.device(device)
    except (RuntimeError, TypeError, ValueError) as error:
        raise invalid_parameter("device", "Problem", "a torch device such as 'cpu' or 'cuda:0'", device) from error


class DataSource:
    """One split of data: ``(X, y)`` tensors, a ``torch.utils.data.Dataset`` or a ``DataLoader``.

    Iterates in fixed order (no shuffling; a shuffling DataLoader is iterated as it comes), moves
    batches to the requested device, and checks each batch for non-finite inputs and — through
    ``target_check``, which :class:`Problem` sets — each batch of targets, so a bad label late in a
    loader is caught by every consumer. Every batch is a copy: a model that works in place never
    changes the caller's tensors.
    """

    def __init__(self, data: Any, *, name: str = "train", batch_size: int = 256) -> None:
        self.name = name
        self.batch_size = batch_size
        # called as target_check(y, where) on each batch of a Dataset/DataLoader (tensor targets are
        # checked once, whole, by Problem); raises DataError
        self.target_check: Callable[[torch.Tensor, str], None] | None = None
        self.x: torch.Tensor | None = None
        self.y: torch.Tensor | None = None
        self.loader: DataLoader | None = None
        if isinstance(data, DataLoader):
            self.loader = data
        elif isinstance(data, TorchDataset):
            self.loader = DataLoader(data, batch_size=batch_size, shuffle=False)
        elif isinstance(data, (tuple, list)) and len(data) == 2:
            x = _as_tensor(data[0], f"The {name} inputs")
            y = _as_tensor(data[1], f"The {name} targets")
            if x.ndim == 0 or len(x) != len(y):
                raise DataError(
                    f"The {name} data must have as many targets as inputs. "
                    f"Got inputs of shape {tuple(x.shape)} and targets of shape {tuple(y.shape)}."
                )
            if x.is_floating_point() and not bool(torch.isfinite(x).all()):
                bad = int((~torch.isfinite(x)).reshape(len(x), -1).any(dim=1).sum())
                raise DataError(f"The {name} inputs contain NaN or infinite values in {bad} example(s).")
            if y.is_floating_point() and not bool(torch.isfinite(y).all()):
                raise DataError(f"The {name} targets contain NaN or infinite values.")
            self.x, self.y = x, y
        else:
            raise invalid_parameter(
                name,
                "Problem",
                "a pair (X, y) of tensors or arrays, a torch Dataset or a DataLoader",
                data,
                cls=DataError,
            )
        if len(self) == 0:
            raise DataError(f"The {name} data is empty: at least one example is needed.")

    def __len__(self) -> int:
        if self.x is not None:
            return len(self.x)
        dataset = getattr(self.loader, "dataset", None)
        try:
            return len(dataset)  # type: ignore[arg-type]
        except TypeError:
            return sum(len(batch[0]) for batch in self.loader)  # type: ignore[union-attr]

    def batches(
        self,
        batch_size: int | None = None,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        max_samples: int | None = None,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
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
            if seen + len(x) > limit:
                x, y = x[: limit - seen], y[: limit - seen]
            seen += len(x)
            if self.x is None:
                if x.is_floating_point() and not bool(torch.isfinite(x).all()):
                    raise DataError(f"Batch {index} of the {self.name} data contains NaN or infinite inputs.")
                if self.target_check is not None:
                    self.target_check(y, f" (batch {index} of the {self.name} data)")
            cast = dtype if dtype is not None and x.is_floating_point() else None
            yield x.to(device=device, dtype=cast, copy=True), y.to(device=device, copy=True)

    def _raw_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.x is not None and self.y is not None:
            for start in range(0, len(self.x), batch_size):
                yield self.x[start : start + batch_size], self.y[start : start + batch_size]
            return
        for batch in self.loader:  # type: ignore[union-attr]
            if not isinstance(batch, (tuple, list)) or len(batch) < 2:
                raise DataError(
                    f"Each batch of the {self.name} data must be a pair (x, y). Got {type(batch).__name__}."
                )
            yield _as_tensor(batch[0], f"The {self.name} inputs"), _as_tensor(batch[1], f"The {self.name} targets")

    def tensors(
        self,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        max_samples: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """All (or the first ``max_samples``) examples as two tensors."""
        xs, ys = zip(*self.batches(device=device, dtype=dtype, max_samples=max_samples))
        return torch.cat(xs), torch.cat(ys)


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """Mean loss and accuracy of a model on one split."""

    loss: float
    accuracy: float | None
    n: int


class Problem:
    """A model, its loss, its train (and optional test) data and optional initial weights.

    Args:
        model: the trained ``nn.Module`` (never modified by deepscope).
        train: ``(X, y)`` tensors or arrays, a ``torch.utils.data.Dataset`` or a ``DataLoader``.
        test: the same kinds, optional.
        loss: "cross_entropy" (default), "mse", "bce_with_logits", "nll", or a callable
            ``(output, target) -> scalar mean loss``.
        init_state: the model's ``state_dict`` at initialisation (for distance-from-init measures).
        batch_size: batch size used when iterating tensors or a Dataset.
        device: where analyses run; defaults to the device of the model's parameters.

    The constructor refuses a model with NaN/Inf weights (:class:`~deepscope.errors.NonFiniteError`
    naming the layer), runs the model once on the first training batch (under the model guard, in
    eval semantics) to check shapes, and then checks the targets of EVERY example against the
    output and the loss: label range and integer dtype for classification losses, values per
    example for "mse"/"bce_with_logits". Tensor data is checked whole at once; a Dataset or
    DataLoader batch by batch as it is iterated (by any analysis), so a bad label anywhere is
    found. Inputs are copied before every forward pass (in-place first layers are safe).
    """

    def __init__(
        self,
        model: nn.Module,
        train: Any,
        test: Any = None,
        loss: str | LossFn = "cross_entropy",
        init_state: Mapping[str, torch.Tensor] | None = None,
        *,
        batch_size: int = 256,
        device: torch.device | str | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise invalid_parameter("model", "Problem", "a torch.nn.Module", model)
        check_finite_model(model, "Problem")
        self.model = model
        self.batch_size = check_int(batch_size, "batch_size", "Problem", minimum=1)
        self.loss_name, self.criterion = resolve_loss(loss)
        self.train = DataSource(train, name="train", batch_size=batch_size)
        self.test = None if test is None else DataSource(test, name="test", batch_size=batch_size)
        first = next(iter(model.parameters()), None)
        self.device = (
            _as_device(device) if device is not None else (first.device if first is not None else torch.device("cpu"))
        )
        self.dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32
        self.init_state = self._check_init_state(init_state)
        self.output_shape = self._probe()
        for source in (self.train, self.test):
            if source is None:
                continue
            if source.y is not None:
                self.check_labels(source.y, f" (the {source.name} data)")
            else:
                source.target_check = self.check_labels

    @classmethod
    def from_dataset(cls, model: nn.Module, dataset: DatasetSplits, **kwargs: Any) -> Problem:
        """Build a Problem from a :class:`~deepscope.data.DatasetSplits` (loss chosen by its task)."""
        if not isinstance(dataset, DatasetSplits):
            raise invalid_parameter(
                "dataset", "Problem.from_dataset", "a DatasetSplits from deepscope.datasets.load", dataset
            )
        kwargs.setdefault("loss", "cross_entropy" if dataset.task == "classification" else "mse")
        return cls(model, dataset.train, dataset.test if len(dataset.x_test) else None, **kwargs)

    # ----------------------------------------------------------------------------- validation
    def _check_init_state(self, init_state: Mapping[str, torch.Tensor] | None) -> dict[str, torch.Tensor] | None:
        if init_state is None:
            return None
        if not isinstance(init_state, Mapping):
            raise invalid_parameter("init_state", "Problem", "a state_dict (mapping of names to tensors)", init_state)
        params = dict(self.model.named_parameters())
        missing = [name for name in params if name not in init_state]
        if missing:
            raise invalid_parameter(
                "init_state",
                "Problem",
                f"a state_dict with every parameter (missing {missing[:3]})",
                list(init_state)[:3],
            )
        for name, value in params.items():
            if tuple(init_state[name].shape) != tuple(value.shape):
                raise DataError(
                    f"init_state['{name}'] has shape {tuple(init_state[name].shape)} but the model's parameter has {tuple(value.shape)}."
                )
        return {k: v.detach().to(self.device) for k, v in init_state.items()}

    def _probe(self) -> tuple[int, ...]:
        x, y = next(self.train.batches(batch_size=min(self.batch_size, 64), device=self.device, dtype=self.dtype))
        with model_guard(self.model), torch.no_grad():
            output = first_forward(self.model, x, "training inputs")
        if not isinstance(output, torch.Tensor):
            raise DataError(f"The model must return a tensor. Got {type(output).__name__}.")
        self.check_targets(output, y)
        return tuple(output.shape[1:])

    def check_targets(self, output: torch.Tensor, y: torch.Tensor) -> None:
        """Raise DataError if the targets ``y`` do not fit the model ``output`` and the loss (cheap; per batch)."""
        check_targets_fit(self.loss_name, tuple(output.shape[1:]), y, "")

    def check_labels(self, y: torch.Tensor, where: str = "") -> None:
        """Raise DataError if the targets ``y`` (any number of examples) do not fit the model's output and the loss.

        ``where`` (e.g. " (batch 3 of the train data)") is added to the message.
        """
        check_targets_fit(self.loss_name, self.output_shape, y, where)

    # ----------------------------------------------------------------------------- functional view
    @property
    def num_classes(self) -> int | None:
        """Output width for classification losses, else None."""
        return self.output_shape[-1] if self.loss_name in _CLASSIFICATION_LOSSES and self.output_shape else None

    def parameters(self, trainable_only: bool = True) -> dict[str, torch.Tensor]:
        """Detached parameter tensors by name (sharing storage: never modify them in place)."""
        return {n: p.detach() for n, p in self.model.named_parameters() if p.requires_grad or not trainable_only}

    def buffers(self) -> dict[str, torch.Tensor]:
        """Buffers by name (BatchNorm running statistics, ...)."""
        return {n: b for n, b in self.model.named_buffers()}

    def forward(self, params: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """``model(x)`` with ``params`` substituted (``torch.func.functional_call``); others as in the model.

        The model gets a copy of ``x`` (differentiable), so an in-place first layer cannot change it.
        """
        return torch.func.functional_call(self.model, (dict(params), self.buffers()), (x.clone(),), strict=False)

    def loss(self, params: Mapping[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean loss of the model with ``params`` on ``(x, y)``."""
        return self.criterion(self.forward(params, x), y)

    def batches(
        self, split: str = "train", batch_size: int | None = None, max_samples: int | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches of ``split`` ("train" or "test") on the model's device and dtype."""
        return self.source(split).batches(batch_size, device=self.device, dtype=self.dtype, max_samples=max_samples)

    def source(self, split: str) -> DataSource:
        """The DataSource of ``split``; raises if the Problem has no such split."""
        if split == "train":
            return self.train
        if split == "test":
            if self.test is None:
                raise DataError("This Problem has no test data; pass test=(X, y) to Problem().")
            return self.test
        raise invalid_parameter("split", "Problem", "'train' or 'test'", split)

    def tensors(self, split: str = "train", max_samples: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """All examples of ``split`` (or the first ``max_samples``) as two tensors on the model's device."""
        return self.source(split).tensors(device=self.device, dtype=self.dtype, max_samples=max_samples)

    def evaluate(
        self, split: str = "train", params: Mapping[str, torch.Tensor] | None = None, max_samples: int | None = None
    ) -> Evaluation:
        """Mean loss and accuracy (classification) of the model, or of ``params``, on ``split``."""
        params = self.parameters(trainable_only=False) if params is None else self._check_params(params)
        total_loss, correct, n = 0.0, 0, 0
        with model_guard(self.model), torch.no_grad():
            for x, y in self.batches(split, max_samples=max_samples):
                output = self.forward(params, x)
                self.check_targets(output, y)
                total_loss += float(self.criterion(output, y)) * len(x)
                if self.num_classes is not None:
                    correct += int((output.argmax(dim=-1) == y).sum())
                n += len(x)
        return Evaluation(loss=total_loss / n, accuracy=correct / n if self.num_classes is not None else None, n=n)

    def _check_params(self, params: Any) -> Mapping[str, torch.Tensor]:
        """``params`` must map names of the model's parameters/buffers to tensors of their shapes."""
        known = {**dict(self.model.named_parameters()), **dict(self.model.named_buffers())}
        if not isinstance(params, Mapping):
            raise invalid_parameter("params", "Problem.evaluate", "a mapping of parameter names to tensors", params)
        for name, value in params.items():
            if name not in known:
                raise invalid_parameter(
                    "params",
                    "Problem.evaluate",
                    f"a mapping over the model's names {list(known)[:4]}",
                    list(params)[:4],
                )
            if not isinstance(value, torch.Tensor) or tuple(value.shape) != tuple(known[name].shape):
                raise invalid_parameter(
                    f"params['{name}']", "Problem.evaluate", f"a tensor of shape {tuple(known[name].shape)}", value
                )
        return params

    def __repr__(self) -> str:
        test = f", test={len(self.test)}" if self.test is not None else ""
        return f"Problem(model={type(self.model).__name__}, train={len(self.train)}{test}, loss={self.loss_name!r})"
