"""Problem: a model, its loss, its data and (optionally) its initial weights.

Most analyses need the same four things; a Problem holds them, validates them once, and offers
batched, device-aware iteration and a functional view of the parameters
(``torch.func.functional_call``), so analyses never have to touch the caller's module. Inputs may
be float tensors, integer token ids or dicts of tensors (a HuggingFace model's ``input_ids`` and
``attention_mask``); ``output_fn`` picks the scores from a model that returns a tuple, dict or
``ModelOutput``:

    >>> problem = Problem(bert, ({"input_ids": ids, "attention_mask": mask}, labels),
    ...                   output_fn=lambda out: out.logits)  # doctest: +SKIP

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

import torch
from torch import nn

from deepscope import _inputs
from deepscope._finite import check_finite_model
from deepscope._forward import first_forward
from deepscope._inputs import Inputs
from deepscope._outputs import OutputFn, check_output_fn, select_output
from deepscope._validation import check_int
from deepscope.data._base import DatasetSplits
from deepscope.data._checks import check_targets_fit
from deepscope.data.source import DataSource
from deepscope.errors import DataError, invalid_parameter
from deepscope.guard import model_guard

__all__ = ["Problem", "DataSource", "Evaluation", "LOSSES", "resolve_loss", "input_embedding"]

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


def _as_device(device: Any) -> torch.device:
    try:
        return torch.device(device)
    except (RuntimeError, TypeError, ValueError) as error:
        raise invalid_parameter("device", "Problem", "a torch device such as 'cpu' or 'cuda:0'", device) from error


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """Mean loss and accuracy of a model on one split."""

    loss: float
    accuracy: float | None
    n: int


def input_embedding(model: nn.Module) -> tuple[str, nn.Embedding] | None:
    """The embedding that reads the model's token ids: HF's ``get_input_embeddings()``, else the only one.

    Returns ``(name, module)``, or None when there is no such embedding or several that could be it.
    """
    getter = getattr(model, "get_input_embeddings", None)
    chosen = None
    if callable(getter):
        try:
            chosen = getter()
        except (NotImplementedError, AttributeError):  # a HF base class without the method filled in
            chosen = None
    embeddings = [(name, module) for name, module in model.named_modules() if isinstance(module, nn.Embedding)]
    if isinstance(chosen, nn.Embedding):
        return next(((name, module) for name, module in embeddings if module is chosen), ("embedding", chosen))
    return embeddings[0] if len(embeddings) == 1 else None


class Problem:
    """A model, its loss, its train (and optional test) data and optional initial weights.

    Args:
        model: the trained ``nn.Module`` (never modified by deepscope).
        train: ``(X, y)`` tensors or arrays, a ``torch.utils.data.Dataset`` or a ``DataLoader``. ``X``
            may be integer token ids or a dict of tensors (``{"input_ids": ..., "attention_mask":
            ...}``, passed to the model as ``model(**X)``); a Dataset/DataLoader then yields
            ``(dict, y)`` pairs (or dicts with the targets under ``"labels"``).
        test: the same kinds, optional.
        loss: "cross_entropy" (default), "mse", "bce_with_logits", "nll", or a callable
            ``(output, target) -> scalar mean loss``.
        init_state: the model's ``state_dict`` at initialisation (for distance-from-init measures).
        batch_size: batch size used when iterating tensors or a Dataset.
        device: where analyses run; defaults to the device of the model's parameters.
        output_fn: for a model that returns a tuple, dict or HuggingFace ``ModelOutput``, picks the
            scores the loss reads (``lambda out: out.logits``); :meth:`forward` and :meth:`loss`
            apply it, so every analysis that goes through them sees those scores. For a
            classification loss with one label per example it must give ``(batch, classes)``.

    The constructor refuses a model with NaN/Inf weights (:class:`~deepscope.errors.NonFiniteError`
    naming the layer), runs the model once on the first training batch (under the model guard, in
    eval semantics) to check shapes, and then checks the targets of EVERY example against the
    output and the loss: label range and integer dtype for classification losses, values per
    example for "mse"/"bce_with_logits". Token ids are checked against the model's input
    embedding (``0 <= id < num_embeddings``) and attention masks against the ids' shape. Tensor
    data is checked whole at once; a Dataset or DataLoader batch by batch as it is iterated (by
    any analysis), so a bad label anywhere is found. Inputs are copied before every forward pass
    (in-place first layers are safe); integer inputs are never cast to float.

    Parameters shared between modules (tied embeddings, as GPT-2's ``lm_head.weight`` and
    ``transformer.wte.weight``) appear once, under their first name, in :meth:`parameters`
    (``named_parameters()`` removes duplicates), and :meth:`forward` substitutes them in every
    place they are used (``functional_call`` keeps ties).
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
        output_fn: OutputFn | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise invalid_parameter("model", "Problem", "a torch.nn.Module", model)
        check_output_fn(output_fn, "Problem")
        check_finite_model(model, "Problem")
        self.model = model
        self.output_fn = output_fn
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
        self._embedding = input_embedding(model)
        for source in (self.train, self.test):
            if source is not None and source.x is not None:
                self.check_token_ids(source.x, f" (the {source.name} data)")
        self.output_shape = self._probe()
        for source in (self.train, self.test):
            if source is None:
                continue
            if source.y is not None:
                self.check_labels(source.y, f" (the {source.name} data)")
            else:
                source.target_check = self.check_labels
                source.input_check = self.check_token_ids

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
        untied = self._untie(init_state, "init_state", "Problem")
        return {k: v.detach().to(self.device) for k, v in untied.items()}

    def _probe(self) -> tuple[int, ...]:
        x, y = next(self.train.batches(batch_size=min(self.batch_size, 64), device=self.device, dtype=self.dtype))
        with model_guard(self.model), torch.no_grad():
            output = first_forward(lambda inputs: _inputs.call_model(self.model, inputs), x, "training inputs")
        if self.output_fn is None:
            if not isinstance(output, torch.Tensor):
                raise DataError(
                    f"The model must return a tensor. Got {type(output).__name__}: pass "
                    "Problem(..., output_fn=lambda out: out.logits) (or out[0], out['logits']) to pick the scores."
                )
        else:
            output = select_output(output, self.output_fn, "Problem")
            self._check_selected(output, y, _inputs.batch_length(x))
        self.check_targets(output, y)
        return tuple(output.shape[1:])

    def _check_selected(self, output: torch.Tensor, y: torch.Tensor, n: int) -> None:
        """What ``output_fn`` picks: one row per example; (batch, classes) for one class label per example."""
        one_label = self.loss_name in _CLASSIFICATION_LOSSES and y.ndim == 1
        if output.ndim == 0 or output.shape[0] != n or (one_label and output.ndim != 2):
            expected = "(batch, classes)" if one_label else f"a tensor with one row per example ({n})"
            raise invalid_parameter(
                "output_fn",
                "Problem",
                f"a function giving {expected} for the loss {self.loss_name!r} on {n} example(s); it gave shape "
                f"{tuple(output.shape)} (e.g. lambda out: out.logits[:, -1] for the last token's scores)",
                self.output_fn,
            )

    def check_token_ids(self, inputs: Inputs, where: str = "") -> None:
        """Raise DataError if integer token ids fall outside the model's input embedding ``[0, num_embeddings)``.

        The ids are ``inputs["input_ids"]`` of a dict, or an integer tensor itself; nothing is
        checked when the model has no single input embedding (see :func:`input_embedding`).
        """
        if self._embedding is None:
            return
        ids = inputs.get("input_ids") if _inputs.is_mapping(inputs) else inputs  # type: ignore[union-attr]
        if not isinstance(ids, torch.Tensor) or ids.numel() == 0 or ids.is_floating_point() or ids.dtype == torch.bool:
            return
        name, embedding = self._embedding
        low, high = int(ids.min()), int(ids.max())
        if low < 0 or high >= embedding.num_embeddings:
            bad = int(((ids < 0) | (ids >= embedding.num_embeddings)).sum())
            raise DataError(
                f"Token ids must lie in [0, {embedding.num_embeddings - 1}] for the model's input embedding "
                f"'{name}' ({embedding.num_embeddings} rows). Got ids in [{low}, {high}]{where}: {bad} id(s) "
                "out of range; check the tokenizer matches the model's vocabulary."
            )

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
        """Detached parameter tensors by name (sharing storage: never modify them in place); tied ones once."""
        return {n: p.detach() for n, p in self.model.named_parameters() if p.requires_grad or not trainable_only}

    def buffers(self) -> dict[str, torch.Tensor]:
        """Buffers by name (BatchNorm running statistics, ...)."""
        return {n: b for n, b in self.model.named_buffers()}

    def forward(self, params: Mapping[str, torch.Tensor], x: Inputs) -> torch.Tensor:
        """``output_fn(model(x))`` with ``params`` substituted (``torch.func.functional_call``); others as in the model.

        ``x`` is a tensor or a dict of tensors (``model(**x)``). The model gets a copy of ``x``
        (differentiable), so an in-place first layer cannot change it.
        """
        state = (dict(params), self.buffers())
        if _inputs.is_mapping(x):
            copies = {name: value.clone() for name, value in x.items()}  # type: ignore[union-attr]
            output = torch.func.functional_call(self.model, state, (), copies, strict=False)
        else:
            output = torch.func.functional_call(self.model, state, (x.clone(),), strict=False)  # type: ignore[union-attr]
        return self.select(output)

    def select(self, output: Any) -> torch.Tensor:
        """The scores the loss reads from a raw model output: ``output_fn(output)``, or the output tensor."""
        return select_output(output, self.output_fn, "Problem")

    def run(self, x: Inputs, model: nn.Module | None = None) -> torch.Tensor:
        """``output_fn(model(x))`` for the Problem's model (or a copy of it, e.g. a perturbed one) as it is."""
        return self.select(_inputs.call_model(self.model if model is None else model, x))

    def loss(self, params: Mapping[str, torch.Tensor], x: Inputs, y: torch.Tensor) -> torch.Tensor:
        """Mean loss of the model with ``params`` on ``(x, y)``."""
        return self.criterion(self.forward(params, x), y)

    def batches(
        self, split: str = "train", batch_size: int | None = None, max_samples: int | None = None
    ) -> Iterator[tuple[Inputs, torch.Tensor]]:
        """Batches of ``split`` ("train" or "test") on the model's device; floating inputs in its dtype."""
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

    def tensors(self, split: str = "train", max_samples: int | None = None) -> tuple[Inputs, torch.Tensor]:
        """All examples of ``split`` (or the first ``max_samples``) on the model's device: inputs of the
        data's kind (a tensor, or a dict of tensors) and the targets."""
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
                total_loss += float(self.criterion(output, y)) * len(y)
                if self.num_classes is not None:
                    correct += int((output.argmax(dim=-1) == y).sum())
                n += len(y)
        return Evaluation(loss=total_loss / n, accuracy=correct / n if self.num_classes is not None else None, n=n)

    def _check_params(self, params: Any) -> Mapping[str, torch.Tensor]:
        """``params`` must map names of the model's parameters/buffers (tied names too) to tensors of their shapes."""
        known = {
            **dict(self.model.named_parameters(remove_duplicate=False)),
            **dict(self.model.named_buffers(remove_duplicate=False)),
        }
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
        return self._untie(params, "params", "Problem.evaluate")

    def _untie(self, params: Mapping[str, torch.Tensor], what: str, owner: str) -> dict[str, torch.Tensor]:
        """``params`` with the second names of tied parameters dropped (a state_dict lists both).

        ``functional_call`` refuses two tensors for one tied parameter, so weights given by name
        (``init_state``, ``evaluate(params=...)``) keep the first name only, as ``named_parameters()``.
        """
        first: dict[int, str] = {}
        kept = dict(params)
        for name, parameter in self.model.named_parameters(remove_duplicate=False):
            canonical = first.setdefault(id(parameter), name)
            if canonical == name or name not in kept:
                continue
            if canonical in kept and not torch.equal(kept[canonical], kept[name]):
                raise invalid_parameter(
                    f"{what}['{name}']",
                    owner,
                    f"the value of {what}['{canonical}'] (the two names are one tied parameter)",
                    "a different tensor",
                )
            kept.setdefault(canonical, kept[name])
            del kept[name]
        return kept

    def __repr__(self) -> str:
        test = f", test={len(self.test)}" if self.test is not None else ""
        return f"Problem(model={type(self.model).__name__}, train={len(self.train)}{test}, loss={self.loss_name!r})"
