"""Grad-CAM: class activation maps of any convolutional layer, weighted by the pooled gradients."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from deepscope._validation import check_choice
from deepscope.attribution._base import DEFAULT_MAX_BATCH, Attribution, OutputFn, finish, prepare
from deepscope.attribution._registry import ReportDefaults, attribution_method, is_image_like
from deepscope.errors import UnsupportedModelError, invalid_parameter
from deepscope.registry import analysis

__all__ = ["grad_cam"]

_CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _find_layer(model: nn.Module, layer: Any) -> tuple[str, nn.Module]:
    named = dict(model.named_modules())
    if layer is None:
        convolutions = [(name, module) for name, module in named.items() if isinstance(module, _CONVOLUTIONS)]
        if not convolutions:
            raise UnsupportedModelError("grad_cam needs a convolutional layer; the model has none (pass layer=...).")
        return convolutions[-1]
    if isinstance(layer, str):
        if layer not in named:
            raise invalid_parameter("layer", "grad_cam", "the name of a submodule of the model", layer)
        return layer, named[layer]
    for name, module in named.items():
        if module is layer:
            return name, module
    raise invalid_parameter("layer", "grad_cam", "None, a submodule of the model, or its name", layer)


@attribution_method(aliases=("gradcam",), claimed_axioms=(), report=ReportDefaults(order=4, shown_when=is_image_like))
@analysis(takes="model_inputs", family="attribution", fixture="cnn")
def grad_cam(
    model: nn.Module,
    inputs: torch.Tensor,
    target: Any = None,
    *,
    layer: Any = None,
    relu: bool = True,
    interpolate: str = "bilinear",
    output_fn: OutputFn | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> Attribution:
    """Grad-CAM, L = ReLU(Σ_k α_k A^k) with α_k = mean over positions of ∂F/∂A^k (Selvaraju et al., 2017).

    The layer map is upsampled to the input's spatial size and repeated over input channels so
    ``values`` is shaped like ``inputs``; the raw map is ``diagnostics["layer_map"]``
    ``(batch, 1, *layer_spatial)``. The forward hook that captures A is removed in ``finally``.

    Args:
        model, inputs, target, output_fn, max_batch: as for every method.
        layer: a submodule, its name, or None for the last Conv1d/2d/3d layer.
        relu: apply the ReLU (as in the paper; Captum's ``relu_attributions``).
        interpolate: "bilinear" (linear/trilinear by dimension) or "nearest" upsampling.

    Returns:
        An :class:`Attribution` with ``values`` shaped like ``inputs``.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten(), torch.nn.Linear(8, 2))
        >>> grad_cam(net, torch.rand(1, 1, 4, 4), target=0).values.shape
        torch.Size([1, 1, 4, 4])
    """
    owner = "grad_cam"
    check_choice(interpolate, "interpolate", owner, ("bilinear", "nearest"))
    name, module = _find_layer(model, layer)
    prepared = prepare(model, inputs, target, owner=owner, output_fn=output_fn, max_batch=max_batch)
    x, targets = prepared.inputs, prepared.targets
    if x.dim() < 3:
        raise UnsupportedModelError("grad_cam needs inputs with spatial dimensions (batch, channels, *positions).")
    maps = []
    captured: list[torch.Tensor] = []

    def capture(_module, _args, output):
        captured.append(output)

    handle = module.register_forward_hook(capture)
    try:
        for start in range(0, x.shape[0], prepared.max_batch):
            chunk = x[start : start + prepared.max_batch]
            captured.clear()
            with torch.enable_grad():
                outputs = prepared.forward(chunk.detach().requires_grad_(True))
                if not captured or not isinstance(captured[-1], torch.Tensor) or captured[-1].dim() < 3:
                    raise UnsupportedModelError(
                        f"grad_cam: layer '{name}' did not produce a (batch, channels, ...) map."
                    )
                activation = captured[-1]
                chunk_maps = []
                for t in range(targets.shape[0]):
                    selected = outputs.gather(1, targets[t, start : start + len(chunk)].unsqueeze(1)).sum()
                    (gradient,) = torch.autograd.grad(selected, activation, retain_graph=t < targets.shape[0] - 1)
                    weights = gradient.mean(dim=tuple(range(2, gradient.dim())), keepdim=True)
                    chunk_maps.append((weights * activation).sum(1, keepdim=True).detach())
            maps.append(torch.stack(chunk_maps))
    finally:
        handle.remove()
    layer_map = torch.cat(maps, dim=1)  # (T, n, 1, *layer_spatial)
    if relu:
        layer_map = layer_map.clamp_min(0)
    spatial = tuple(x.shape[2:])
    flat = layer_map.flatten(0, 1)
    if tuple(flat.shape[2:]) != spatial:
        if len(flat.shape[2:]) != len(spatial):
            raise UnsupportedModelError(
                f"grad_cam: layer '{name}' map has {flat.dim() - 2} spatial dims, the input has {len(spatial)}."
            )
        mode = "nearest" if interpolate == "nearest" else {1: "linear", 2: "bilinear", 3: "trilinear"}[len(spatial)]
        kwargs = {} if mode == "nearest" else {"align_corners": False}
        flat = nn.functional.interpolate(flat, size=spatial, mode=mode, **kwargs)
    values = flat.view(targets.shape[0], x.shape[0], 1, *spatial).expand(-1, -1, *x.shape[1:])
    return finish(
        model,
        values=values.contiguous(),
        targets=targets,
        multi=prepared.multi,
        method=owner,
        diagnostics={"layer_map": layer_map},
        evaluations=prepared.evaluations + x.shape[0],
        options={"layer": name, "relu": relu, "interpolate": interpolate, "max_batch": prepared.max_batch},
    )
