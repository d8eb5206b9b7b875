"""What the layer attribution methods share: finding the layer, hooking its output, token baselines.

A layer method attributes to the OUTPUT of one submodule (``layer``) instead of the inputs, as
Captum's ``LayerIntegratedGradients`` and ``LayerGradientXActivation`` do: a forward hook on the
layer records its output, or REPLACES it with given values (the points of a path integral), so
that the gradient of the selected output with respect to those values can be taken while the
rest of the inputs (e.g. the attention mask) stay as given. The hook lives only inside
:func:`layer_hook` and is removed in ``finally``.

For token models the natural layer is the input embedding (``layer=None``): HuggingFace's
``model.get_input_embeddings()`` when the model has it, else its only ``nn.Embedding``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn

from deepscope._inputs import Inputs, batch_length, is_mapping, slice_rows
from deepscope.attribution._prepare import prepare_baseline
from deepscope.errors import DataError, UnsupportedModelError, invalid_parameter

__all__ = [
    "LayerState",
    "check_token_ids",
    "find_layer",
    "input_baseline",
    "layer_hook",
    "layer_outputs",
    "per_token",
]


def find_layer(model: nn.Module, layer: Any, owner: str) -> tuple[str, nn.Module]:
    """``(name, module)`` of ``layer``: a submodule, its name, or None for the input embedding."""
    named = dict(model.named_modules())
    if layer is None:
        getter = getattr(model, "get_input_embeddings", None)
        embedding = None
        if callable(getter):
            with contextlib.suppress(Exception):  # HF models that do not implement it raise NotImplementedError
                embedding = getter()
        if not isinstance(embedding, nn.Module):
            found = [module for module in named.values() if isinstance(module, nn.Embedding)]
            if len(found) != 1:
                what = "no nn.Embedding" if not found else f"{len(found)} nn.Embedding modules"
                raise UnsupportedModelError(
                    f"{owner}: layer=None means the input embedding, and the model has {what}; pass layer=<a "
                    "submodule or its name> (e.g. layer='embeddings.word_embeddings')."
                )
            embedding = found[0]
        layer = embedding
    if isinstance(layer, str):
        if layer not in named:
            raise invalid_parameter("layer", owner, "the name of a submodule of the model", layer)
        return layer, named[layer]
    for name, module in named.items():
        if module is layer:
            return name, module
    raise invalid_parameter("layer", owner, "None, a submodule of the model, or its name", layer)


def check_token_ids(
    module: nn.Module, name: str, inputs: Inputs, owner: str, *, input_key: str = "input_ids", what: str = "inputs"
) -> None:
    """Raise DataError when the layer is an ``nn.Embedding`` and token ids fall outside its rows.

    Checked before any forward pass: on a GPU an out-of-range id is a device-side assert that ends
    the process, not an exception.
    """
    if not isinstance(module, nn.Embedding):
        return
    ids = inputs.get(input_key) if is_mapping(inputs) else inputs  # type: ignore[union-attr]
    if not isinstance(ids, torch.Tensor) or ids.numel() == 0 or ids.is_floating_point() or ids.dtype == torch.bool:
        return
    rows = module.num_embeddings
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= rows:
        bad = int(((ids < 0) | (ids >= rows)).sum())
        raise DataError(
            f"{owner}: token ids must lie in [0, {rows - 1}] for the embedding '{name}' ({rows} rows). Got {what} "
            f"ids in [{low}, {high}]: {bad} id(s) out of range; check the tokenizer (and the baseline id)."
        )


class LayerState:
    """The hook's state: the outputs captured in the current pass and the values to put in their place."""

    def __init__(self, name: str, owner: str) -> None:
        self.name, self.owner = name, owner
        self.captured: list[torch.Tensor] = []
        self.replacement: torch.Tensor | None = None
        self.leaf = False  # True: the output is detached into a leaf that requires grad (∂F/∂h for any model)

    def output(self) -> torch.Tensor:
        """The layer's output in the last forward pass (the replacement when one was set)."""
        if not self.captured:
            raise UnsupportedModelError(f"{self.owner}: layer '{self.name}' was not called in the forward pass.")
        return self.captured[-1]


@contextlib.contextmanager
def layer_hook(module: nn.Module, name: str, owner: str) -> Iterator[LayerState]:
    """A forward hook on ``module`` that records its output, or returns ``state.replacement`` instead."""
    state = LayerState(name, owner)

    def hook(_module: nn.Module, _args: Any, output: Any) -> Any:
        if not isinstance(output, torch.Tensor):
            raise UnsupportedModelError(
                f"{owner}: layer '{name}' returns a {type(output).__name__}; a layer method needs a layer whose "
                "output is one tensor."
            )
        if state.captured:
            raise UnsupportedModelError(
                f"{owner}: layer '{name}' is called more than once per forward pass; pick a layer used once."
            )
        replacement = state.replacement
        if replacement is not None:
            if replacement.shape != output.shape:
                raise UnsupportedModelError(
                    f"{owner}: layer '{name}' gave an output of shape {tuple(output.shape)}; the values put in its "
                    f"place have shape {tuple(replacement.shape)}."
                )
            output = replacement
        elif state.leaf and torch.is_grad_enabled():
            output = output.detach().requires_grad_(True)
        else:  # a record only: kept apart from the model, which may change its output in place (h += ...)
            state.captured.append(output.detach().clone())
            return output
        state.captured.append(output)
        # the model gets a copy, so that an in-place step after the layer (h += position) changes neither
        # the values put in its place nor the leaf the gradient is taken for
        return output.clone()

    handle = module.register_forward_hook(hook)
    try:
        yield state
    finally:
        handle.remove()


def layer_outputs(
    forward: Callable[[Any], torch.Tensor], state: LayerState, inputs: Inputs, max_batch: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The layer's output ``(n, *layer)`` and the model's outputs ``(n, classes)`` on ``inputs``, no graph."""
    activations, outputs = [], []
    with torch.no_grad():
        for start in range(0, batch_length(inputs), max_batch):
            state.captured.clear()
            outputs.append(forward(slice_rows(inputs, start, start + max_batch)))
            activations.append(state.output().detach())
    state.captured.clear()
    return torch.cat(activations), torch.cat(outputs)


def _ids(inputs: Inputs, input_key: str, owner: str) -> torch.Tensor:
    if not is_mapping(inputs):
        return inputs  # type: ignore[return-value]
    if input_key not in inputs:  # type: ignore[operator]
        raise invalid_parameter("input_key", owner, f"one of the input names {sorted(inputs)}", input_key)
    return inputs[input_key]  # type: ignore[index]


def input_baseline(
    inputs: Inputs, baseline: Any, owner: str, *, input_key: str = "input_ids", keep_tokens: Sequence[int] = ()
) -> Inputs:
    """The reference INPUT whose layer output starts the path: ``inputs`` with the attributed tensor replaced.

    For token ids (an integer tensor, or ``inputs[input_key]`` of a dict): None = id 0 everywhere (as
    Captum's default zeros), an int = that id everywhere (a pad or [MASK] token), or an integer tensor
    shaped like the ids; positions whose id is in ``keep_tokens`` (e.g. [CLS], [SEP]) keep it. For a
    float tensor: as :func:`~deepscope.attribution._prepare.prepare_baseline`. The other named
    tensors of a dict (the attention mask) are held fixed.
    """
    ids = _ids(inputs, input_key, owner)
    if ids.is_floating_point():
        reference = prepare_baseline(baseline, ids, owner)
    else:
        if baseline is None:
            reference = torch.zeros_like(ids)
        elif isinstance(baseline, int) and not isinstance(baseline, bool):
            reference = torch.full_like(ids, baseline)
        elif (
            isinstance(baseline, torch.Tensor)
            and not (baseline.is_floating_point() or baseline.is_complex())
            and tuple(baseline.shape) in (tuple(ids.shape), tuple(ids.shape[1:]))
        ):
            reference = baseline.to(ids.device, ids.dtype).expand_as(ids).clone()
        else:
            raise invalid_parameter(
                "baseline",
                owner,
                f"None, a token id (int) or an integer tensor of shape {tuple(ids.shape)} (the reference token ids)",
                baseline,
            )
        if keep_tokens:
            kept = torch.isin(ids, torch.as_tensor(list(keep_tokens), device=ids.device, dtype=ids.dtype))
            reference = torch.where(kept, ids, reference)
    if is_mapping(inputs):
        return {**inputs, input_key: reference}  # type: ignore[dict-item]
    return reference


def layer_reference(layer_baseline: Any, activations: torch.Tensor, owner: str) -> torch.Tensor:
    """A given layer-space baseline: a tensor shaped like the layer output ``(n, *layer)`` or ``(*layer)``."""
    if not isinstance(layer_baseline, torch.Tensor) or not layer_baseline.is_floating_point():
        raise invalid_parameter(
            "layer_baseline",
            owner,
            f"a float tensor of shape {tuple(activations.shape)} (the layer output)",
            layer_baseline,
        )
    reference = layer_baseline.detach().to(activations.device, activations.dtype)
    if tuple(reference.shape) == tuple(activations.shape[1:]):
        reference = reference.unsqueeze(0).expand_as(activations)
    if reference.shape != activations.shape:
        raise invalid_parameter(
            "layer_baseline",
            owner,
            f"a tensor of shape {tuple(activations.shape)} or {tuple(activations.shape[1:])} (the layer output)",
            layer_baseline,
        )
    if not bool(torch.isfinite(reference).all()):
        raise DataError(f"The 'layer_baseline' of {owner} contains NaN or infinite values.")
    return reference.contiguous()


def per_token(values: torch.Tensor) -> torch.Tensor:
    """Layer attributions ``(T, n, d1, d2, ...)`` summed over every dimension after ``d1``: ``(T, n, d1)``.

    For a ``(batch, tokens, hidden)`` layer such as an embedding this is one score per token.
    """
    if values.dim() <= 3:
        return values
    return values.flatten(3).sum(3)
