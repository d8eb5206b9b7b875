"""Layer integrated gradients: integrated gradients in the output space of one layer (e.g. the embedding)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn

from deepscope._inputs import batch_length, concatenate, rows, slice_rows
from deepscope._validation import check_choice, check_float, check_int
from deepscope.attribution._base import (
    DEFAULT_MAX_BATCH,
    Attribution,
    OutputFn,
    chunk_starts,
    finish,
    prepare,
    relative_completeness_error,
)
from deepscope.attribution._layer import (
    LayerState,
    check_token_ids,
    find_layer,
    input_baseline,
    layer_hook,
    layer_outputs,
    layer_reference,
    per_token,
)
from deepscope.attribution._quadrature import RULES, nested_fejer, quadrature
from deepscope.attribution._registry import ReportDefaults, attribution_method, is_tokens
from deepscope.errors import invalid_parameter
from deepscope.registry import analysis

__all__ = ["layer_integrated_gradients"]


def _layer_path_chunks(
    forward: Callable[[Any], torch.Tensor],
    state: LayerState,
    inputs: Any,
    start_values: torch.Tensor,
    delta: torch.Tensor,
    targets: torch.Tensor,
    alphas: torch.Tensor,
    max_batch: int,
    progress: bool,
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor, list[torch.Tensor]]]:
    """Chunks of ``max_batch`` (example, node) rows: (first row, example, node, [∂F_t/∂h per target]).

    Each row runs the model on its example's inputs with the layer's output replaced by the path
    point h' + α (h − h') (rows are example-major: row = example · m + node).
    """
    n, m, n_targets = start_values.shape[0], alphas.shape[0], targets.shape[0]
    alphas = alphas.to(device=delta.device, dtype=delta.dtype)
    view = (-1,) + (1,) * (delta.dim() - 1)
    for begin in chunk_starts(n * m, max_batch, progress, f"layer integrated gradients, {m} steps"):
        flat = torch.arange(begin, min(begin + max_batch, n * m), device=delta.device)
        example, step = flat // m, flat % m
        points = (start_values[example] + alphas[step].view(view) * delta[example]).requires_grad_(True)
        state.captured.clear()
        state.replacement = points
        try:
            with torch.enable_grad():
                outputs = forward(rows(inputs, example))
                grads = []
                for t in range(n_targets):
                    selected = outputs.gather(1, targets[t, example].unsqueeze(1)).sum()
                    grads.append(torch.autograd.grad(selected, points, retain_graph=t < n_targets - 1)[0])
        finally:
            state.replacement = None
        yield begin, example, step, grads


def layer_path_sum(
    forward: Callable[[Any], torch.Tensor],
    state: LayerState,
    inputs: Any,
    start_values: torch.Tensor,
    delta: torch.Tensor,
    targets: torch.Tensor,
    alphas: torch.Tensor,
    weights: torch.Tensor,
    max_batch: int,
    progress: bool = False,
) -> torch.Tensor:
    """Σ_s w_s ∂F/∂h at h = h' + α_s (h − h') per target and example, the layer output replaced by h.

    Returns:
        (T, n, *layer) weighted gradient sums.
    """
    weights = weights.to(device=delta.device, dtype=delta.dtype)
    total = torch.zeros((targets.shape[0], *delta.shape), dtype=delta.dtype, device=delta.device)
    view = (-1,) + (1,) * (delta.dim() - 1)
    chunks = _layer_path_chunks(forward, state, inputs, start_values, delta, targets, alphas, max_batch, progress)
    for _, example, step, grads in chunks:
        for t, grad in enumerate(grads):
            total[t].index_add_(0, example, grad * weights[step].view(view))
    return total


def layer_path_gradients(
    forward: Callable[[Any], torch.Tensor],
    state: LayerState,
    inputs: Any,
    start_values: torch.Tensor,
    delta: torch.Tensor,
    targets: torch.Tensor,
    alphas: torch.Tensor,
    max_batch: int,
) -> torch.Tensor:
    """∂F/∂h at h = h' + α_s (h − h') per target, example and node, kept for the nested rule to re-weight.

    Returns:
        (T, n, m, *layer) gradients.
    """
    n, m = start_values.shape[0], alphas.shape[0]
    grads = torch.zeros((targets.shape[0], n * m, *delta.shape[1:]), dtype=delta.dtype, device=delta.device)
    chunks = _layer_path_chunks(forward, state, inputs, start_values, delta, targets, alphas, max_batch, False)
    for begin, example, _, chunk in chunks:
        for t, grad in enumerate(chunk):
            grads[t, begin : begin + example.numel()] = grad
    return grads.view(targets.shape[0], n, m, *delta.shape[1:])


def _outputs_at(
    forward: Callable[[Any], torch.Tensor], state: LayerState, inputs: Any, values: torch.Tensor, max_batch: int
) -> torch.Tensor:
    """The model's outputs ``(n, classes)`` with the layer's output set to ``values`` (n, *layer), chunked."""
    outputs = []
    try:
        with torch.no_grad():
            for begin in range(0, values.shape[0], max_batch):
                state.captured.clear()
                state.replacement = values[begin : begin + max_batch]
                outputs.append(forward(slice_rows(inputs, begin, begin + max_batch)))
    finally:
        state.replacement = None
        state.captured.clear()
    return torch.cat(outputs)


@attribution_method(
    aliases=("lig",),
    claimed_axioms=(),  # completeness holds in the layer's output space, which check_axioms does not perturb
    report=ReportDefaults(order=20, shown_when=is_tokens, options=lambda inputs, max_steps: {"steps": 32}),
    takes=("tensor", "tokens"),
)
@analysis(takes="model_inputs", family="attribution", fixture="cnn", example_kwargs={"layer": "0", "steps": 4})
def layer_integrated_gradients(
    model: nn.Module,
    inputs: Any,
    target: Any = None,
    *,
    layer: Any = None,
    baseline: Any = None,
    layer_baseline: torch.Tensor | None = None,
    keep_tokens: Sequence[int] = (),
    input_key: str = "input_ids",
    steps: int | None = 50,
    rule: str | None = None,
    tol: float | None = None,
    initial_steps: int = 8,
    max_steps: int = 1024,
    output_fn: OutputFn | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
    progress: bool = False,
) -> Attribution:
    """Layer IG, LIG_j = (h_j − h'_j) ∫₀¹ ∂F/∂h_j (h' + α(h − h')) dα, h the output of ``layer``.

    Integrated gradients (Sundararajan et al., 2017) taken in the output space of one layer, with
    Captum's ``LayerIntegratedGradients`` semantics: h = layer(x) on the inputs, h' = layer(x') on
    the baseline input (or ``layer_baseline``), and every path point is obtained by running the
    model on the inputs with the layer's output REPLACED by h' + α(h − h') (a forward hook), so
    everything that does not pass through the layer (an attention mask, token types) stays fixed.
    This is how token models are attributed: the layer is the embedding, the baseline a pad or
    [MASK] sequence. Completeness, Σ_j LIG_j = F(x) − F(h'), holds for the exact integral (F(h')
    is the model with the layer's output set to h'); its relative error is reported.

    Args:
        model: the model; ``model(inputs)`` (or ``model(**inputs)``) gives class scores.
        inputs: a float tensor, integer token ids ``(batch, tokens)``, or a dict of tensors
            (``input_ids``, ``attention_mask``, ...; passed as keyword arguments).
        target: None (predicted class), an int, ``(batch,)`` ints, or several targets.
        layer: a submodule, its name, or None for the input embedding (``get_input_embeddings()``,
            else the model's only ``nn.Embedding``).
        baseline: the reference input x': for token ids None (id 0 everywhere, Captum's default),
            a token id (int) or an integer tensor of ids; for float inputs None (zeros), a number
            or a tensor (as in :func:`integrated_gradients`).
        layer_baseline: h' itself, a tensor shaped like the layer output (instead of ``baseline``).
        keep_tokens: ids the baseline keeps where the input has them (e.g. [CLS] and [SEP]).
        input_key: for dict inputs, the name of the tensor the baseline replaces.
        steps: quadrature nodes per example, or None for the adaptive mode: each example is refined
            until its relative completeness error is below ``tol`` (default 0.01) or ``max_steps``
            is reached (``converged`` says which).
        rule: None (Gauss-Legendre for fixed steps, the nested Fejér-2 rule for the adaptive mode)
            or a rule of :func:`integrated_gradients`. With "fejer2" the adaptive levels are
            2^k − 1 nodes from the largest level ≤ ``initial_steps`` and each refinement evaluates
            only the new nodes (an example that needs m nodes costs m path points; the stored
            gradients cost pending examples × nodes × layer size memory); any other rule
            restarts from ``initial_steps`` at each doubling (m + m/2 + ... points).
        tol, initial_steps, max_steps: the adaptive mode's target and schedule.
        output_fn: maps a tuple/dict/ModelOutput to ``(batch, classes)``.
        max_batch: rows (path points) per forward pass.
        progress: show a tqdm bar over the chunks.

    Returns:
        An :class:`Attribution`: ``values`` the layer attributions summed over every dimension
        after the second, i.e. ``(batch, tokens)`` for an embedding (one score per token);
        diagnostics ``layer_attributions`` (the full ``(batch, *layer)`` attributions),
        ``completeness_error`` (relative), ``delta`` (F(x) − F(h')), ``steps`` per example, and
        ``converged`` in the adaptive mode.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Flatten(), torch.nn.Linear(12, 2))
        >>> a = layer_integrated_gradients(net, torch.tensor([[1, 2, 3]]), target=0, steps=4)
        >>> a.values.shape, bool(a.diagnostics["completeness_error"] < 1e-4)
        (torch.Size([1, 3]), True)
    """
    owner = "layer_integrated_gradients"
    if rule is None:
        rule = "gausslegendre" if steps is not None else "fejer2"
    check_choice(rule, "rule", owner, RULES)
    minimum = 2 if rule == "riemann_trapezoid" else 1
    if steps is not None:
        check_int(steps, "steps", owner, minimum=minimum)
        if tol is not None:
            raise invalid_parameter("tol", owner, "None when steps is an int (tol is the target of steps=None)", tol)
    tol = 0.01 if tol is None else check_float(tol, "tol", owner, minimum=0.0, strict_minimum=True)
    check_int(initial_steps, "initial_steps", owner, minimum=max(minimum, 1))
    check_int(max_steps, "max_steps", owner, minimum=initial_steps)
    if baseline is not None and layer_baseline is not None:
        raise invalid_parameter(
            "layer_baseline",
            owner,
            "None when baseline is given (one reference: an input or a layer output)",
            layer_baseline,
        )
    name, module = find_layer(model, layer, owner)
    check_token_ids(module, name, inputs, owner, input_key=input_key)  # before any forward pass (a GPU would abort)
    prepared = prepare(model, inputs, target, owner=owner, output_fn=output_fn, max_batch=max_batch)
    x, forward, targets = prepared.inputs, prepared.forward, prepared.targets
    reference = (
        None
        if layer_baseline is not None
        else input_baseline(x, baseline, owner, input_key=input_key, keep_tokens=keep_tokens)
    )
    if reference is not None:
        check_token_ids(module, name, reference, owner, input_key=input_key, what="baseline")
    with layer_hook(module, name, owner) as state:
        n = batch_length(x)
        if reference is None:
            activations, outputs = layer_outputs(forward, state, x, prepared.max_batch)
            start = layer_reference(layer_baseline, activations, owner)
        else:  # h and h' in one pass over the inputs and the baseline inputs
            both, outputs = layer_outputs(forward, state, concatenate([x, reference]), prepared.max_batch)
            activations, start, outputs = both[:n], both[n:], outputs[:n]
        # F at the path's start: the model with the layer's output set to h' (the inputs otherwise unchanged)
        at_start = _outputs_at(forward, state, x, start, prepared.max_batch)
        at_input = outputs.gather(1, targets.t()).t()
        at_baseline = at_start.gather(1, targets.t()).t()
        delta = activations - start

        def attribute(index: torch.Tensor, count: int) -> torch.Tensor:
            alphas, weights = quadrature(rule, count)
            sums = layer_path_sum(
                forward,
                state,
                rows(x, index),
                start[index],
                delta[index],
                targets[:, index],
                alphas,
                weights,
                prepared.max_batch,
                progress,
            )
            return sums * delta[index].unsqueeze(0)

        everyone = torch.arange(n, device=delta.device)
        if steps is not None:
            full = attribute(everyone, steps)
            used = torch.full((n,), steps, dtype=torch.long)
            evaluations = n * steps
        elif rule == "fejer2":

            def gradients(pending: torch.Tensor, alphas: torch.Tensor) -> torch.Tensor:
                ends = (rows(x, pending), start[pending], delta[pending], targets[:, pending])
                return layer_path_gradients(forward, state, *ends, alphas, prepared.max_batch).flatten(3)

            nested = nested_fejer(gradients, delta.flatten(1), at_input, at_baseline, tol, initial_steps, max_steps)
            full, used = nested.values.view(targets.shape[0], *delta.shape), nested.used
            evaluations = nested.gradient_rows
        else:
            full = torch.zeros((targets.shape[0], *delta.shape), dtype=delta.dtype, device=delta.device)
            used = torch.zeros(n, dtype=torch.long)
            pending, count, evaluations = everyone, initial_steps, 0
            while pending.numel() > 0:
                full[:, pending] = attribute(pending, count)
                evaluations += pending.numel() * count
                used[pending.cpu()] = count
                totals = full[:, pending].flatten(2).sum(2)
                error = relative_completeness_error(totals, at_input[:, pending], at_baseline[:, pending])
                count *= 2
                if count > max_steps:
                    break
                pending = pending[error.max(dim=0).values >= tol]
    error = relative_completeness_error(full.flatten(2).sum(2), at_input, at_baseline)
    diagnostics: dict[str, Any] = {
        "completeness_error": error,
        "delta": at_input - at_baseline,
        "steps": used.to(error.device).unsqueeze(0).expand_as(error).clone(),
        "layer_attributions": full,
        "layer": name,
    }
    if steps is None:
        diagnostics["converged"] = error < tol
    return finish(
        model,
        values=per_token(full),
        targets=targets,
        multi=prepared.multi,
        method=owner,
        diagnostics=diagnostics,
        evaluations=prepared.evaluations + 3 * n + evaluations,
        options={
            "layer": name,
            "steps": steps,
            "rule": rule,
            "tol": tol if steps is None else None,
            "initial_steps": initial_steps,
            "max_steps": max_steps,
            "input_key": input_key,
            "max_batch": prepared.max_batch,
        },
    )
