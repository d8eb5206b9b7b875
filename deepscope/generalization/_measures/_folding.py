"""The weight layers of a model, with BatchNorm folded into the preceding Linear/Conv layer.

Norm-based measures (Jiang et al. 2020, "BN folded first") need the linear maps the network
actually applies. A BatchNorm in eval semantics is an affine per-channel map
``y = γ (x − μ) / √(σ² + ε) + β``; following the Linear/Conv ``x = W a + b`` it folds into

    W' = W · diag(γ / √(σ² + ε)),   b' = (b − μ) · γ / √(σ² + ε) + β      (per output channel)

The structure (which layer feeds which BatchNorm, each layer's input shape) is discovered once
from the execution order of one forward pass (hooks removed in ``finally``); the folding itself is
a pure function of a parameter/buffer dict, so perturbed or initial weights fold the same way.

Example:
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.ReLU())
    >>> structure = discover_layers(net.eval(), torch.randn(2, 3))
    >>> [(layer.name, layer.batchnorm) for layer in structure.layers]
    [('0', '1')]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import torch
from torch import nn

from deepscope._batchnorm import AFFINE_LAYERS, BATCHNORMS, fold_batchnorm
from deepscope._inputs import Inputs, batch_length, call_model

__all__ = [
    "is_transposed_linear",
    "LayerSpec",
    "LayerStructure",
    "discover_layers",
    "fold_layers",
    "FoldedLayer",
    "folded_state",
]

_WEIGHT_LAYERS = AFFINE_LAYERS  # the layer kinds and the folding arithmetic live in deepscope/_batchnorm.py
_BATCHNORMS = BATCHNORMS
# parameter-free modules the norm measures understand (piecewise-linear, positively homogeneous)
_HOMOGENEOUS = (
    nn.ReLU,
    nn.LeakyReLU,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.Flatten,
    nn.Dropout,
    nn.Identity,
)


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """One Linear/Conv layer: its module name, parameter keys, folded BatchNorm and input shape."""

    name: str
    module: nn.Module
    kind: str  # "linear" or "conv"
    weight_key: str
    bias_key: str | None
    batchnorm: str | None
    input_shape: tuple[int, ...]  # per example, as seen in the forward pass
    batchnorm_eps: float = 0.0
    transposed: bool = False  # the parameter stores Wᵀ (HuggingFace's Conv1D); folded weights are W


@dataclasses.dataclass(frozen=True)
class LayerStructure:
    """The weight layers in execution order and what the norm measures cannot handle.

    Attributes:
        layers: Linear/Conv layers (BatchNorm folded where it directly follows one).
        unsupported: "name (Type)" of modules with parameters that are neither Linear/Conv nor a
            foldable BatchNorm (their weights are not part of the norm measures).
        non_homogeneous: "name (Type)" of parameter-free modules that are not piecewise-linear
            and positively homogeneous (Tanh, GELU, ...): path norm and margin-normalised products
            assume ReLU-like networks.
        tied: "name is canonical" for each layer whose weight is another parameter (tied
            embeddings: GPT-2's ``lm_head.weight`` is ``transformer.wte.weight``); every weight is
            counted once, under the name ``named_parameters()`` gives it, and a layer whose weight
            an earlier layer already contributed is not a second layer.
        activation_bytes: bytes of the tensors entering every leaf module for one example (what a
            backward pass keeps per example, about): the measures size their chunks with it.
    """

    layers: list[LayerSpec]
    unsupported: list[str]
    non_homogeneous: list[str]
    tied: list[str] = dataclasses.field(default_factory=list)
    activation_bytes: int = 0


def is_transposed_linear(module: nn.Module) -> bool:
    """HuggingFace's ``Conv1D`` (GPT-2's attention and MLP): a Linear layer storing ``Wᵀ`` (in × out)."""
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf") and getattr(module, "weight", None) is not None


def _kind(module: nn.Module) -> str:
    return "linear" if isinstance(module, nn.Linear) or is_transposed_linear(module) else "conv"


def _channels(module: nn.Module) -> int:
    if is_transposed_linear(module):
        return module.nf
    return module.out_features if isinstance(module, nn.Linear) else module.out_channels


def _tensors(value) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, Mapping):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in _tensors(item)]
    return []


def discover_layers(model: nn.Module, example: Inputs) -> LayerStructure:
    """Run ``model(example)`` once (no grad) and record its leaf modules in execution order.

    A BatchNorm is folded into the leaf that ran just before it when that leaf is a Linear/Conv
    with as many outputs as the BatchNorm has features (the usual ``conv → bn`` pattern, also
    inside residual blocks).

    Args:
        model: the network (call inside the model guard, in eval semantics).
        example: a small batch of inputs, ``(batch, *features)``, token ids or a dict of tensors.
    """
    names = {module: name for name, module in model.named_modules()}
    canonical = {id(p): name for name, p in model.named_parameters()}  # a tied parameter: its first name
    order: list[tuple[str, nn.Module, tuple[int, ...]]] = []
    seen: set[int] = set()
    size = batch_length(example)
    activation = [0]

    def record(module: nn.Module, inputs: tuple) -> None:
        activation[0] += sum(t.numel() * t.element_size() for t in _tensors(inputs)) // max(size, 1)
        if id(module) in seen:
            return
        seen.add(id(module))
        first = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
        order.append((names[module], module, tuple(first.shape[1:]) if first is not None else ()))

    handles = [m.register_forward_pre_hook(record) for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            call_model(model, example)
    finally:
        for handle in handles:
            handle.remove()

    layers: list[LayerSpec] = []
    unsupported: list[str] = []
    non_homogeneous: list[str] = []
    tied: list[str] = []
    counted: set[str] = set()
    previous: tuple[str, nn.Module] | None = None
    for name, module, shape in order:
        has_params = any(True for _ in module.parameters(recurse=False))
        if isinstance(module, _WEIGHT_LAYERS) or is_transposed_linear(module):
            prefix = f"{name}." if name else ""
            weight_key = canonical[id(module.weight)]
            if weight_key != prefix + "weight":
                tied.append(f"{prefix}weight is {weight_key}")
            if weight_key in counted:  # the same weight applied again: counted once, by its first layer
                previous = (name, module)
                continue
            counted.add(weight_key)
            layers.append(
                LayerSpec(
                    name=name,
                    module=module,
                    kind=_kind(module),
                    weight_key=weight_key,
                    bias_key=canonical[id(module.bias)] if module.bias is not None else None,
                    batchnorm=None,
                    input_shape=shape,
                    transposed=is_transposed_linear(module),
                )
            )
        elif isinstance(module, _BATCHNORMS):
            foldable = (
                previous is not None
                and isinstance(previous[1], _WEIGHT_LAYERS)
                and _channels(previous[1]) == module.num_features
                and module.track_running_stats
                and layers
                and layers[-1].module is previous[1]
                and layers[-1].batchnorm is None
            )
            if foldable:
                layers[-1] = dataclasses.replace(layers[-1], batchnorm=name, batchnorm_eps=module.eps)
            else:
                unsupported.append(f"{name} ({type(module).__name__}, not after a Linear/Conv)")
        elif has_params:
            unsupported.append(f"{name} ({type(module).__name__})")
        elif not isinstance(module, _HOMOGENEOUS):
            non_homogeneous.append(f"{name} ({type(module).__name__})")
        previous = (name, module)
    # parametrised modules the forward pass never reached are listed too, never silently dropped
    for name, module in model.named_modules():
        if not list(module.children()) and id(module) not in seen and any(True for _ in module.parameters(False)):
            unsupported.append(f"{name} ({type(module).__name__}, not used in the forward pass)")
    # parameters held directly by container modules (positional embeddings, scales, ...) too
    leaves = {name for name, module in model.named_modules() if not list(module.children())}
    for name, _ in model.named_parameters():
        owner = name.rpartition(".")[0]
        if owner not in leaves:
            unsupported.append(f"{name} (parameter of a container module)")
    return LayerStructure(
        layers=layers,
        unsupported=unsupported,
        non_homogeneous=non_homogeneous,
        tied=tied,
        activation_bytes=activation[0],
    )


@dataclasses.dataclass(frozen=True)
class FoldedLayer:
    """A layer's folded weight (out, in, *kernel) and bias (out,), with its spec."""

    spec: LayerSpec
    weight: torch.Tensor
    bias: torch.Tensor | None

    def matrix(self) -> torch.Tensor:
        """The weight reshaped to (out, in · kernel) — the kernel matrix, not the conv operator."""
        return self.weight.reshape(self.weight.shape[0], -1)


def fold_layers(
    structure: LayerStructure, params: Mapping[str, torch.Tensor], buffers: Mapping[str, torch.Tensor]
) -> list[FoldedLayer]:
    """The folded weights of every layer in ``structure`` for the given parameters and buffers."""
    folded = []
    for spec in structure.layers:
        weight = params[spec.weight_key]
        if spec.transposed:
            weight = weight.t()
        bias = params[spec.bias_key] if spec.bias_key is not None else None
        if spec.batchnorm is not None:
            prefix = f"{spec.batchnorm}."
            weight, bias = fold_batchnorm(
                weight,
                bias,
                mean=buffers[prefix + "running_mean"],
                var=buffers[prefix + "running_var"],
                eps=spec.batchnorm_eps,
                gamma=params.get(prefix + "weight"),
                beta=params.get(prefix + "bias"),
            )
        folded.append(FoldedLayer(spec=spec, weight=weight, bias=bias))
    return folded


def folded_state(
    structure: LayerStructure,
    folded: list[FoldedLayer],
    params: Mapping[str, torch.Tensor],
    buffers: Mapping[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Parameters and buffers that make the model compute with folded layers and identity BatchNorms.

    The folded weights replace the layer weights; each folded BatchNorm gets mean 0, variance
    ``1 − eps``, γ = 1 and β = 0, so it computes the identity. The network's function is unchanged
    (up to rounding), which the tests check.
    """
    params = dict(params)
    buffers = dict(buffers)
    for layer in folded:
        spec = layer.spec
        params[spec.weight_key] = layer.weight.t() if spec.transposed else layer.weight
        if spec.bias_key is not None:
            params[spec.bias_key] = layer.bias
        if spec.batchnorm is None:
            continue
        prefix = f"{spec.batchnorm}."
        variance = buffers[prefix + "running_var"]
        buffers[prefix + "running_mean"] = torch.zeros_like(variance)
        buffers[prefix + "running_var"] = torch.full_like(variance, 1.0 - spec.batchnorm_eps)
        if spec.bias_key is None:
            # the folded bias has nowhere to go but the BatchNorm's shift
            params[prefix + "bias"] = layer.bias
        else:
            params[prefix + "bias"] = torch.zeros_like(variance)
        params[prefix + "weight"] = torch.ones_like(variance)
    return params, buffers
