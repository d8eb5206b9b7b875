"""Collect a model's intermediate activations with forward hooks (always removed in ``finally``)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from deepscope.attribution._base import model_device_dtype
from deepscope.errors import DataError, invalid_parameter

__all__ = ["default_layers", "check_layers", "collect_activations", "check_inputs"]

_SKIPPED = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Identity)


def default_layers(model: nn.Module) -> list[str]:
    """Every leaf module except Dropout/Identity, in registration order (input side first)."""
    return [
        name
        for name, module in model.named_modules()
        if name and not any(True for _ in module.children()) and not isinstance(module, _SKIPPED)
    ]


def check_layers(model: nn.Module, layers: Any, owner: str, name: str = "layers") -> list[str]:
    """Validated module names (None means :func:`default_layers`)."""
    available = dict(model.named_modules())
    if layers is None:
        found = default_layers(model)
        if not found:
            raise invalid_parameter(name, owner, "given: the model has no submodules to probe", layers)
        return found
    if isinstance(layers, str):
        layers = [layers]
    if not isinstance(layers, (list, tuple)) or not layers or not all(isinstance(n, str) for n in layers):
        raise invalid_parameter(name, owner, "a list of module names (see model.named_modules())", layers)
    missing = [n for n in layers if n not in available or not n]
    if missing:
        listed = ", ".join(repr(n) for n in list(available)[1:12])
        raise invalid_parameter(name, owner, f"module names of the model such as {listed}", missing)
    return list(layers)


def check_inputs(model: nn.Module, inputs: Any, owner: str, name: str = "inputs") -> torch.Tensor:
    """A finite float tensor with a batch dimension, moved to the model's device and dtype."""
    if not isinstance(inputs, torch.Tensor) or inputs.dim() < 2 or inputs.shape[0] == 0:
        raise invalid_parameter(name, owner, "a non-empty tensor of shape (batch, *features)", inputs)
    if inputs.is_floating_point() and not bool(torch.isfinite(inputs).all()):
        raise DataError(f"The '{name}' of {owner} contain NaN or infinite values.")
    device, dtype = model_device_dtype(model)
    return inputs.detach().to(device=device, dtype=dtype if inputs.is_floating_point() else inputs.dtype)


def collect_activations(
    model: nn.Module, inputs: torch.Tensor, layers: list[str], *, max_batch: int = 1024
) -> dict[str, torch.Tensor]:
    """Outputs of the named modules for ``inputs``, flattened to ``(batch, features)``, detached, on CPU.

    The forward pass runs in chunks of ``max_batch`` rows under ``torch.no_grad``; the hooks are
    removed in ``finally`` even if a forward pass fails.
    """
    modules = dict(model.named_modules())
    collected: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    handles = []

    def recorder(name: str):
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if isinstance(output, (tuple, list)):
                output = output[0]
            collected[name].append(output.detach().reshape(output.shape[0], -1).to("cpu", torch.float64))

        return hook

    try:
        for name in layers:
            handles.append(modules[name].register_forward_hook(recorder(name)))
        with torch.no_grad():
            for start in range(0, inputs.shape[0], max_batch):
                model(inputs[start : start + max_batch])
    finally:
        for handle in handles:
            handle.remove()
    return {name: torch.cat(parts) for name, parts in collected.items()}
