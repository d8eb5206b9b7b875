"""Layer gradient × activation: the first-order contribution of each unit of one layer's output."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from deepscope._inputs import batch_length, slice_rows
from deepscope.attribution._base import DEFAULT_MAX_BATCH, Attribution, OutputFn, finish, prepare
from deepscope.attribution._layer import check_token_ids, find_layer, layer_hook, per_token
from deepscope.attribution._registry import ReportDefaults, attribution_method, is_tokens
from deepscope.registry import analysis

__all__ = ["layer_gradient_x_activation"]


@attribution_method(
    aliases=("lgxa",),
    claimed_axioms=(),
    report=ReportDefaults(order=21, shown_when=is_tokens, full_only=True),
    takes=("tensor", "tokens"),
)
@analysis(takes="model_inputs", family="attribution", fixture="cnn", example_kwargs={"layer": "0"})
def layer_gradient_x_activation(
    model: nn.Module,
    inputs: Any,
    target: Any = None,
    *,
    layer: Any = None,
    output_fn: OutputFn | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> Attribution:
    """Layer gradient × activation, h_j · ∂F/∂h_j with h the output of ``layer`` (Captum's LayerGradientXActivation).

    Input × gradient (Shrikumar et al., 2016) taken at one layer's output h instead of the inputs:
    for token models at the embedding, where there is no gradient with respect to the ids. For a
    model linear in h without biases, Σ_j h_j ∂F/∂h_j = F(x) (Euler's theorem); ``sum_ratio``
    reports Σ_j h_j ∂F/∂h_j − F(x), the part a first-order expansion at h = 0 misses.

    Args:
        model: the model; ``model(inputs)`` (or ``model(**inputs)``) gives class scores.
        inputs: a float tensor, integer token ids ``(batch, tokens)``, or a dict of tensors.
        target: None (predicted class), an int, ``(batch,)`` ints, or several targets.
        layer: a submodule, its name, or None for the input embedding.
        output_fn: maps a tuple/dict/ModelOutput to ``(batch, classes)``.
        max_batch: rows per forward pass.

    Returns:
        An :class:`Attribution`: ``values`` summed over every layer dimension after the second
        (``(batch, tokens)`` for an embedding); diagnostics ``layer_attributions`` (full) and
        ``residual`` (Σ values − F(x)).

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Flatten(), torch.nn.Linear(12, 2, bias=False))
        >>> a = layer_gradient_x_activation(net, torch.tensor([[1, 2, 3]]), target=0)
        >>> bool(abs(a.diagnostics["residual"]) < 1e-5)
        True
    """
    owner = "layer_gradient_x_activation"
    name, module = find_layer(model, layer, owner)
    check_token_ids(module, name, inputs, owner)  # before any forward pass (a GPU would abort)
    prepared = prepare(model, inputs, target, owner=owner, output_fn=output_fn, max_batch=max_batch)
    x, forward, targets = prepared.inputs, prepared.forward, prepared.targets
    n, n_targets = batch_length(x), targets.shape[0]
    chunks, selected_chunks = [], []
    with layer_hook(module, name, owner) as state:
        state.leaf = True
        for start in range(0, n, prepared.max_batch):
            state.captured.clear()
            with torch.enable_grad():
                outputs = forward(slice_rows(x, start, start + prepared.max_batch))
                activation = state.output()
                per_target, selected_rows = [], []
                for t in range(n_targets):
                    selected = outputs.gather(1, targets[t, start : start + len(outputs)].unsqueeze(1)).squeeze(1)
                    (grad,) = torch.autograd.grad(selected.sum(), activation, retain_graph=t < n_targets - 1)
                    per_target.append(grad * activation.detach())
                    selected_rows.append(selected.detach())
            chunks.append(torch.stack(per_target))
            selected_chunks.append(torch.stack(selected_rows))
    full = torch.cat(chunks, dim=1)
    selected_values = torch.cat(selected_chunks, dim=1)
    residual = full.flatten(2).sum(2) - selected_values
    return finish(
        model,
        values=per_token(full),
        targets=targets,
        multi=prepared.multi,
        method=owner,
        diagnostics={"layer_attributions": full, "residual": residual, "layer": name},
        evaluations=prepared.evaluations + n,
        options={"layer": name, "max_batch": prepared.max_batch},
    )
