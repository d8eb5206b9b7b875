"""The Attribution section of a token model: the layer methods at the input embedding, as coloured text.

Token inputs (integer ids or a dict such as ``input_ids`` + ``attention_mask``) get the methods the
registry shows for tokens (layer integrated gradients from the pad-token baseline when the model's
config names one, AttnLRP, ...), each example drawn as text with per-token colours
(:mod:`deepscope.attribution.token_figure`), and a table of each method's completeness or
conservation error. Imported by :mod:`deepscope.attribution.report_section` only.
"""

from __future__ import annotations

from typing import Any

from deepscope._inputs import batch_length
from deepscope.attribution._base import Attribution
from deepscope.attribution._registry import report_methods
from deepscope.attribution.token_figure import token_html, token_rows
from deepscope.errors import DeepscopeError
from deepscope.report.sections import AuditContext, Html, Section, Table, Text

__all__ = ["token_section"]


def token_section(context: AuditContext, inputs: Any, budget: dict[str, Any]) -> Section:
    """Token models: the layer methods at the input embedding, shown as coloured text."""
    model = context.problem.model
    output_fn = getattr(context.problem, "output_fn", None)
    tokenizer = getattr(context.dataset, "tokenizer", None) or getattr(context.problem, "tokenizer", None)
    pad = getattr(getattr(model, "config", None), "pad_token_id", None)
    maps: dict[str, Attribution] = {}
    skipped: list[str] = []
    for name, (function, options) in report_methods(inputs, context.budget, budget["max_steps"]).items():
        if name == "layer_integrated_gradients" and isinstance(pad, int):
            options = {**options, "baseline": pad}  # the pad-token sequence (Captum's tutorials' choice)
        try:
            maps[name] = function(model, inputs, None, output_fn=output_fn, **options)
        except DeepscopeError as error:
            skipped.append(f"{name}: {error}")
    blocks: list[Any] = []
    rows = []
    shown = min(4, batch_length(inputs))
    for i in range(shown):
        for name, result in maps.items():
            tokens, scores = token_rows(inputs, result.values, i, tokenizer)
            rows.append((f"example {i} (class {int(result.target[i])}), {name}", tokens, scores))
    if rows:
        blocks.append(
            Text(
                "Token attributions at the input embedding: red tokens push the predicted class up, blue push it "
                "down (each line scaled to its largest score; hover for the value)."
                + ("" if tokenizer is not None else " Tokens are shown as their ids (no tokenizer was given).")
            )
        )
        blocks.append(Html(token_html(rows)))
    errors = []
    for name, result in maps.items():
        d = result.diagnostics
        for key in ("completeness_error", "conservation_error"):
            if key in d:
                errors.append({"method": name, "check": key.replace("_", " "), "worst": float(d[key].max())})
        if "explained" in d:  # LRP: where the rest of F(x) went, as shares of |F(x)|
            scale = d["explained"].abs().clamp_min(1e-12)
            for key in [k for k in d if k.startswith("kept_")] + ["untracked"]:
                share = float((d[key].abs() / scale).max())
                if share > 1e-6 or key == "untracked":
                    what = f"share kept by {key.removeprefix('kept_')}" if key != "untracked" else "share untracked"
                    errors.append({"method": name, "check": what, "worst": share})
    if errors:
        blocks.append(
            Table(
                errors,
                columns=["method", "check", "worst"],
                caption="Relative error of Σ token scores against the explained score change (completeness) or "
                "the explained score (LRP conservation). For LRP the rest of the score is kept by biases, the "
                "softmax rule and constants added after the embedding (position embeddings), each shown as a "
                "share of |F(x)|; 'untracked' is what no rule accounts for (≈ 0).",
            )
        )
    if skipped:
        blocks.append(Text("Not shown: " + "; ".join(skipped)))
    results = {
        "methods": list(maps),
        "skipped": skipped,
        "errors": errors,
        "token_scores": {name: result.values[:shown].tolist() for name, result in maps.items()},
    }
    summary = f"{len(maps)} token attribution methods explain {shown} inputs at the input embedding."
    return Section(summary=summary, blocks=blocks, results=results)
