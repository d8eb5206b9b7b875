"""AttnLRP: layer-wise relevance propagation through attention, softmax and LayerNorm (transformers)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from deepscope._inputs import batch_length, slice_rows
from deepscope._validation import check_choice, check_float
from deepscope.attribution._attn_rules import (
    KINDS,
    Ledger,
    ModifiedGradient,
    RuleMode,
    identity_rule,
    whole_module,
)
from deepscope.attribution._base import (
    DEFAULT_MAX_BATCH,
    Attribution,
    OutputFn,
    evaluate_outputs,
    finish,
    make_forward,
    prepare,
    relative_completeness_error,
)
from deepscope.attribution._layer import check_token_ids, find_layer, layer_hook, per_token
from deepscope.attribution._registry import ReportDefaults, attribution_method, is_tokens
from deepscope.registry import analysis

__all__ = ["attn_lrp"]


@attribution_method(
    aliases=("attnlrp",),
    claimed_axioms=(),  # conservation is measured at the layer (diagnostics), not in input space
    report=ReportDefaults(order=22, shown_when=is_tokens),
    takes=("tensor", "tokens"),
)
@analysis(takes="model_inputs", family="attribution", fixture="cnn", example_kwargs={"layer": "0"})
def attn_lrp(
    model: nn.Module,
    inputs: Any,
    target: Any = None,
    *,
    layer: Any = None,
    epsilon: float = 1e-6,
    attention: str = "attnlrp",
    output_fn: OutputFn | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> Attribution:
    """AttnLRP relevance at the output h of ``layer``: R = h ⊙ g, g the gradient of the modified backward pass.

    Layer-wise relevance propagation for transformers (Achtibat et al., 2024, "AttnLRP"; Ali et al.,
    2022, "XAI for transformers: better explanations through conservative propagation"): the
    explained score F(x) (the target logit) is redistributed layer by layer down to h with the
    ε-rule for linear layers, the identity rule for activations and for LayerNorm/RMSNorm (σ held
    constant), the uniform rule for products of two activations (q kᵀ, attention × values) and
    AttnLRP's softmax rule; ``attention="cp"`` holds the attention weights constant instead
    (CP-LRP), which conserves exactly. The rules are implemented as a modified gradient
    (:mod:`deepscope.attribution._attn_rules`): a TorchFunctionMode swaps the operations during one
    forward pass (fused ``scaled_dot_product_attention`` is decomposed), so any model built from
    these operations is covered without being rewritten; the weights are used detached
    (``torch.func.functional_call``) and the model is not changed.

    Conservation: Σ_j R_j + Σ kept = F(x), where biases, ε, the softmax rule, activations at 0 and
    constants added on the way (position embeddings, masks) keep their shares; each is reported,
    and what no rule accounts for is ``untracked`` (≈ 0 when every operation of the model has a
    rule). Without biases and with ``attention="cp"``, Σ_j R_j = F(x). On a model that is linear
    in h apart from ReLUs, without biases and with ε = 0, R equals layer gradient × activation.

    Args:
        model: the model; ``model(inputs)`` (or ``model(**inputs)``) gives class scores.
        inputs: a float tensor, integer token ids ``(batch, tokens)``, or a dict of tensors.
        target: None (predicted class), an int, ``(batch,)`` ints, or several targets.
        layer: where relevance is read: a submodule, its name, or None for the input embedding.
        epsilon: the ε of the linear layers' rule (0: LRP-0).
        attention: "attnlrp" (softmax rule, uniform q kᵀ) or "cp" (attention weights constant).
        output_fn: maps a tuple/dict/ModelOutput to ``(batch, classes)``.
        max_batch: rows per forward pass.

    Returns:
        An :class:`Attribution`: ``values`` the relevance summed over every layer dimension after
        the second (one score per token at an embedding); diagnostics ``layer_attributions``
        (full), ``explained`` (F(x)), ``conservation_error`` (|Σ R − F(x)| / |F(x)|), ``kept_<kind>``
        for bias, epsilon, softmax, activation and constant, ``untracked``, ``forward_error``
        (the largest relative change of the outputs under the rules' forward pass; ≈ 1e-7), and
        ``warning`` when ``untracked`` exceeds 1% of F(x).

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Flatten(), torch.nn.Linear(12, 2, bias=False))
        >>> a = attn_lrp(net, torch.tensor([[1, 2, 3]]), target=0, epsilon=0.0)
        >>> bool(a.diagnostics["conservation_error"] < 1e-5)
        True
    """
    owner = "attn_lrp"
    check_choice(attention, "attention", owner, ("attnlrp", "cp"))
    epsilon = check_float(epsilon, "epsilon", owner, minimum=0.0)
    name, module = find_layer(model, layer, owner)
    check_token_ids(module, name, inputs, owner)  # before any forward pass (a GPU would abort)
    prepared = prepare(model, inputs, target, owner=owner, output_fn=output_fn, max_batch=max_batch)
    x, targets = prepared.inputs, prepared.targets
    n, n_targets = batch_length(x), targets.shape[0]
    plain = evaluate_outputs(prepared.forward, x, prepared.max_batch)
    detached = {key: value.detach() for key, value in model.named_parameters()}

    def functional(*args: Any, **kwargs: Any) -> Any:
        return torch.func.functional_call(model, detached, args, kwargs)

    forward = make_forward(functional, output_fn, owner)  # type: ignore[arg-type]
    ledger = Ledger(n_targets, n, plain.dtype, plain.device)
    members = {id(m) for m in model.modules() if whole_module(m)}

    def whole_activation(module: nn.Module, args: tuple, output: Any) -> Any:
        if id(module) in members and args and isinstance(output, torch.Tensor) and args[0].requires_grad:
            return ModifiedGradient.apply(args[0], lambda _: output.detach(), identity_rule(ledger))
        return None

    chunks, explained, ruled = [], [], []
    handle = nn.modules.module.register_module_forward_hook(whole_activation)
    try:
        with layer_hook(module, name, owner) as state:
            state.leaf = True
            for start in range(0, n, prepared.max_batch):
                chunk = slice_rows(x, start, start + prepared.max_batch)
                ledger.start, ledger.rows = start, batch_length(chunk)
                state.captured.clear()
                with torch.enable_grad(), RuleMode(ledger, epsilon, attention == "cp"):
                    outputs = forward(chunk)
                leaf = state.output()
                per_target, selected_rows = [], []
                for t in range(n_targets):
                    ledger.target = t
                    selected = outputs.gather(1, targets[t, start : start + len(outputs)].unsqueeze(1)).squeeze(1)
                    (grad,) = torch.autograd.grad(selected.sum(), leaf, retain_graph=t < n_targets - 1)
                    per_target.append(leaf.detach() * grad)
                    selected_rows.append(selected.detach())
                chunks.append(torch.stack(per_target))
                explained.append(torch.stack(selected_rows))
                ruled.append(outputs.detach())
    finally:
        handle.remove()
    relevance = torch.cat(chunks, dim=1)
    scores = torch.cat(explained, dim=1)
    totals = relevance.flatten(2).sum(2)
    kept = {f"kept_{kind}": ledger.totals[kind] for kind in KINDS}
    untracked = scores - totals - sum(kept.values())
    forward_error = float((torch.cat(ruled) - plain).abs().max() / plain.abs().max().clamp_min(1e-30))
    diagnostics: dict[str, Any] = {
        "layer_attributions": relevance,
        "explained": scores,
        "conservation_error": relative_completeness_error(totals, scores, torch.zeros_like(scores)),
        **kept,
        "untracked": untracked,
        "forward_error": forward_error,
        "layer": name,
    }
    share = float((untracked.abs() / scores.abs().clamp_min(1e-12)).max())
    if share > 0.01:  # an operation without a rule took part: say so rather than return a silent gap
        diagnostics["warning"] = (
            f"operations without an LRP rule took up to {share:.0%} of F(x) ('untracked'): the relevance is "
            "incomplete for this model (a nonlinearity or normalisation written as elementary operations)"
        )
    return finish(
        model,
        values=per_token(relevance),
        targets=targets,
        multi=prepared.multi,
        method=owner,
        diagnostics=diagnostics,
        evaluations=prepared.evaluations + 2 * n,
        options={"layer": name, "epsilon": epsilon, "attention": attention, "max_batch": prepared.max_batch},
    )
