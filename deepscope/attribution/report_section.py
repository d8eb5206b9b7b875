"""The report's "Attribution" section: maps for a few test inputs, the axiom table, metrics, sanity check.

Budgets: "quick" explains 4 inputs with a handful of methods and checks the axioms of two of
them (a few seconds on the demo CNN); "full" explains 8 inputs with every applicable method.
Every map, axiom check, the faithfulness metrics and the randomisation check is priced before it
runs from the measured pass cost (:mod:`deepscope.report.cost`; the counts are in
:mod:`deepscope.attribution._report_cost`): integrated gradients' steps and the axiom checks'
inputs shrink to fit the block budget and the section says so, a block that cannot fit declines in
one line with its estimated seconds, and every method runs in chunks whose saved activations stay
under a few hundred MB (a ResNet-18's 256-step axiom checks held 4.6 GB in one chunk).

One-hot DNA gets, besides the maps, ISM and DeepLIFT-SHAP logos, seqlets and planted-motif
recovery (computed in :mod:`deepscope.attribution._genomics`; each an isolated block with its cost).

Token inputs (integer ids or a dict such as ``input_ids`` + ``attention_mask``) get the layer
methods at the input embedding (layer integrated gradients from a pad-token baseline, AttnLRP) and
a text rendering with per-token colours (:mod:`deepscope.attribution.token_figure`) instead of maps.
"""

from __future__ import annotations

from typing import Any

import torch

from deepscope._inputs import batch_length, slice_rows
from deepscope.attribution import _genomics as genomics
from deepscope.attribution import _report_cost as cost_model
from deepscope.attribution._base import Attribution, draw_attribution
from deepscope.attribution._registry import is_one_hot, is_tokens, report_axiom_methods, report_methods
from deepscope.attribution._report_tokens import token_section
from deepscope.attribution.axioms import check_axioms
from deepscope.errors import DeepscopeError
from deepscope.report.cost import declined, fit_count, pass_cost
from deepscope.report.sections import (
    AuditContext,
    Figure,
    Part,
    Section,
    Table,
    Text,
    register_section,
    run_block,
)
from deepscope.report.svg import figure_to_svg, new_figure

__all__ = ["build_attribution_section"]

_BUDGETS = {
    "quick": {
        "examples": 4,
        "axiom_examples": 3,
        "max_steps": 256,
    },
    "full": {
        "examples": 8,
        "axiom_examples": 8,
        "max_steps": 1024,
    },
}


def _inputs(context: AuditContext, count: int) -> tuple[torch.Tensor, torch.Tensor | None, list[str] | None]:
    """The first test inputs (train when there is no test split), their ground-truth mask and feature names."""
    dataset = context.dataset
    x_test = getattr(dataset, "x_test", None) if dataset is not None else None
    if x_test is not None and batch_length(x_test) > 0:  # a tensor, or a dict of token tensors
        mask = dataset.mask_test[:count] if getattr(dataset, "mask_test", None) is not None else None
        return slice_rows(x_test, 0, count), mask, getattr(dataset, "feature_names", None)
    split = "test" if context.problem.test is not None else "train"
    inputs, _ = context.problem.tensors(split, max_samples=count)
    return inputs, None, None


def _maps_figure(maps: dict[str, Attribution], inputs: torch.Tensor, names: list[str] | None) -> str:
    rows, columns = min(len(inputs), 4), len(maps) + 1
    figure, axes = new_figure(1.6 * columns, 1.5 * rows, ncols=columns, nrows=rows)
    axes = axes.reshape(rows, columns) if hasattr(axes, "reshape") else [[axes]]
    for i in range(rows):
        if inputs.dim() in (3, 4):  # images (channels summed) and sequences (the one-hot matrix) in grey
            picture = inputs[i].sum(0) if inputs.dim() == 4 else inputs[i]
            axes[i][0].imshow(picture.detach().cpu().double().numpy(), cmap="Greys", aspect="auto")
            axes[i][0].set_xticks([])
            axes[i][0].set_yticks([])
        else:
            draw_attribution(axes[i][0], inputs[i].detach().cpu(), names, compact=True)
        axes[i][0].set_title("input" if i == 0 else "", fontsize=8)
        for j, (name, result) in enumerate(maps.items(), start=1):
            draw_attribution(axes[i][j], result.values[i].detach().cpu(), names, compact=True)
            if i == 0:
                axes[i][j].set_title(name, fontsize=8)
    return figure_to_svg(figure)


@register_section("attribution", title="Attribution", order=40)
def build_attribution_section(context: AuditContext) -> Section:
    """Attribution maps, the axiom table, faithfulness/localisation metrics and the sanity check."""
    budget = _BUDGETS.get(context.budget, _BUDGETS["quick"])
    model = context.problem.model
    inputs, mask, names = _inputs(context, budget["examples"])
    if is_tokens(inputs):
        return token_section(context, inputs, budget)
    targets = None  # each method explains the predicted class
    output_fn = getattr(context.problem, "output_fn", None)  # e.g. out.logits of a HuggingFace ViT
    maps: dict[str, Attribution] = {}
    skipped: list[str] = []
    blocks: list[Any] = []
    costs: list[dict[str, Any]] = []
    chunk = cost_model.max_batch(context, inputs, output_fn)  # rows per chunk: activations under CHUNK_BYTES
    ratio = cost_model.forward_ratio(context)
    # which methods, with which options: each method's registration says (attribution/_registry.py)
    for name, (function, options) in report_methods(inputs, context.budget, budget["max_steps"]).items():
        options = cost_model.fitted_options(context, name, inputs, options, chunk, share=0.5)
        found = cost_model.estimate_chunked(
            context, f"{name} map", cost_model.method_passes(name, inputs, options, ratio), chunk, 0.5
        )
        if not found.fits:
            skipped.append(f"{name}: declined (about {found.seconds:.3g} s against {found.budget_seconds:.3g} s)")
            costs.append({**found.to_dict(), "declined": "over budget"})
            continue
        try:
            maps[name] = cost_model.timed(
                costs, found, function, model, inputs, targets, output_fn=output_fn, **{"max_batch": chunk, **options}
            )
        except DeepscopeError as error:
            skipped.append(f"{name}: {error}")
    results: dict[str, Any] = {"methods": list(maps), "skipped": skipped}
    if maps:
        blocks.append(Text("Attribution maps: red features push the predicted class up, blue push it down."))
        blocks.append(
            Figure(_maps_figure(maps, inputs, names), caption="Each row one test input; each column one method.")
        )
    completeness = {
        name: float(result.diagnostics["completeness_error"].max())
        for name, result in maps.items()
        if "completeness_error" in result.diagnostics
    }
    results["completeness_error"] = completeness

    axiom_rows: list[dict[str, Any]] = []
    fitted: list[str] = []  # axiom checks run on fewer inputs or steps than the budget names
    for name, options in report_axiom_methods(context.budget, budget["max_steps"]):
        wanted = options
        count, options = cost_model.fitted_axioms(
            context, name, inputs, budget["axiom_examples"], options, ratio, chunk
        )
        passes = cost_model.axiom_passes(name, inputs[:count], options, ratio)
        found = cost_model.estimate_chunked(context, f"Axioms of {name}", passes, chunk, 1.0)
        if not found.fits:
            blocks.extend(declined(found, "Even one input does not fit; use budget='full'.").blocks)
            costs.append({**found.to_dict(), "declined": "over budget"})
            continue
        if count < min(budget["axiom_examples"], len(inputs)) or options != wanted:
            steps = f" with {options['steps']} steps" if "steps" in options else ""
            fitted.append(f"{name} on {count} of {min(budget['axiom_examples'], len(inputs))} inputs{steps}")
        try:
            extra = {"output_fn": output_fn} if output_fn is not None else {}
            report = cost_model.timed(
                costs,
                found,
                check_axioms,
                model,
                inputs[:count],
                method=name,
                **{"max_batch": chunk, **options},
                **extra,
            )
        except DeepscopeError as error:
            skipped.append(f"axioms of {name}: {error}")
            continue
        for check in report.checks:
            if check["status"] != "not applicable":
                axiom_rows.append(
                    {k: check[k] for k in ("axiom", "claimed", "status", "magnitude")} | {"method": report.method}
                )
    if axiom_rows:
        claimed = [row for row in axiom_rows if row["claimed"]]
        held = sum(row["status"] == "held" for row in claimed)
        blocks.append(
            Text(
                f"Axioms checked at run time: {held} of {len(claimed)} claimed axioms held on these inputs."
                + (f" Fitted to the time budget: {'; '.join(fitted)}." if fitted else "")
            )
        )
        blocks.append(
            Table(
                axiom_rows,
                columns=["method", "axiom", "claimed", "status", "magnitude"],
                caption="Magnitude is relative; 0 is perfect.",
            )
        )
    results["axioms"] = axiom_rows
    results["axioms_fitted"] = fitted

    metric_rows, metric_numbers = _metric_rows(context, model, inputs, maps, mask, chunk, costs, blocks)
    if metric_rows:
        blocks.append(
            Text(
                "Faithfulness: deleting the top-ranked features first should drop the score fast (low deletion AUC) "
                "and inserting them first should raise it fast (high insertion AUC)."
            )
        )
        blocks.append(Table(metric_rows, caption="Mean ± standard error over the inputs shown."))
    results["metrics"] = metric_numbers

    verdict = _sanity_check(context, model, inputs, results, chunk, costs, blocks)
    if verdict:
        blocks.append(Text(f"Sanity check (cascading parameter randomisation, Adebayo et al. 2018) {verdict}."))
    if is_one_hot(inputs):  # one-hot DNA: logos, seqlets, motif recovery (each an isolated block)
        for part in _genomics_parts(context, output_fn):  # merged by hand: one failing part never fails the section
            blocks.extend(part.blocks)
            results.update(part.results)
            costs.append(dict(part.cost))
            if part.error is not None:
                results.setdefault("block_errors", []).append(part.error)
    if skipped:
        blocks.append(Text("Not shown: " + "; ".join(skipped)))

    if completeness:
        worst = max(completeness.values())
        summary = (
            f"{len(maps)} attribution methods explain {len(inputs)} inputs; the path methods' completeness error "
            f"is at most {worst:.1%} of the explained score change."
        )
    else:
        summary = f"{len(maps)} attribution methods explain {len(inputs)} inputs."
    if "motif_recovery" in results:
        recovery = results["motif_recovery"]
        summary += (
            f" Seqlets recover {recovery['recall']:.0%} of the planted motif sites "
            f"(precision {recovery['precision']:.0%}; {recovery['chance_precision']:.0%} for seqlets placed at random)."
        )
    return Section(summary=summary, blocks=blocks, results=results, costs=costs)


def _genomics_parts(context: AuditContext, output_fn: Any) -> list[Part]:
    """ISM logos, DeepLIFT-SHAP logos, seqlets and planted-motif recovery of one-hot DNA: four isolated blocks.

    The sequences are fitted to the block budget from the measured pass cost (ISM: 3L+1 forward
    passes per sequence, an upper bound when its fast path runs; DeepLIFT-SHAP: K + 1 reference rows).
    """
    budget = genomics.GENOMICS_BUDGETS.get(context.budget, genomics.GENOMICS_BUDGETS["quick"])
    model = context.problem.model
    x, mask = genomics.sequences(context.dataset, context.problem, budget["sequences"])
    found: dict[str, Any] = {}

    def ism_part() -> Part:
        unit = pass_cost(context)
        ratio = unit.forward_seconds / max(unit.seconds, 1e-12)  # ISM runs forward passes only
        rows, chunk = 3 * x.shape[-1] + 1, cost_model.max_batch(context, x, output_fn)  # activations < CHUNK_BYTES
        count = cost_model.fitted_sequences(context, len(x), rows * ratio, rows, chunk)
        found["ism"] = genomics.ism_block(model, x[:count], output_fn, budget["logos"], max_batch=chunk)
        return _genomics_part(found["ism"], passes=found["ism"].passes * ratio)

    def shap_part() -> Part:
        k, chunk = budget["n_shuffles"], cost_model.max_batch(context, x, output_fn)  # cached per audit
        count = cost_model.fitted_sequences(context, len(x), genomics.DEEPLIFT_PASS_FACTOR * (k + 1), k + 1, chunk)
        try:
            found["deep_lift_shap"] = genomics.shap_block(model, x[:count], output_fn, budget["logos"], k, chunk)
        except DeepscopeError as error:
            return _not_applicable("DeepLIFT-SHAP logos", str(error))
        return _genomics_part(found["deep_lift_shap"])

    def seqlet_part() -> Part:
        source = found.get("deep_lift_shap") or found.get("ism")
        if source is None:
            return _not_applicable("Seqlets", "neither ISM nor DeepLIFT-SHAP gave a per-position attribution")
        method = "deep_lift_shap" if "deep_lift_shap" in found else "ism"
        found["seqlets"], found["explained"] = genomics.seqlet_block(source.track, method, mask), len(source.track)
        return _genomics_part(found["seqlets"])

    def recovery_part() -> Part:
        called = found.get("seqlets")
        if called is None:
            return _not_applicable("Motif recovery", "no seqlets were called")
        block = genomics.recovery_block(called.seqlets, found["explained"], mask)
        if block is None:
            return _not_applicable("Motif recovery", "the dataset marks no planted motif site per sequence")
        return _genomics_part(block)

    return [
        run_block("ISM logos", ism_part),
        run_block("DeepLIFT-SHAP logos", shap_part),
        run_block("Seqlets", seqlet_part),
        run_block("Motif recovery", recovery_part),
    ]


def _genomics_part(block: genomics.GenomicsBlock, passes: float | None = None) -> Part:
    blocks: list[Any] = [Text(block.text)]
    if block.figure is not None:
        blocks.append(Figure(figure_to_svg(block.figure), caption=block.caption))
    if block.rows:
        blocks.append(Table(block.rows, caption=block.caption))
    passes = block.passes if passes is None else passes
    return Part(blocks, block.results, sentence=block.sentence, cost={} if passes is None else {"passes": passes})


def _not_applicable(label: str, reason: str) -> Part:
    """One line saying that ``label`` does not apply here, and why."""
    reason = reason.strip().rstrip(".")
    return Part([Text(f"{label} — not applicable: {reason}.")], cost={"not_applicable": reason})


def _metric_rows(context, model, inputs, maps, mask, chunk, costs, blocks) -> tuple[list[dict[str, Any]], dict]:
    """Table rows ("mean ± se" text) and the same numbers for results.json, on the inputs the budget affords."""
    try:
        from deepscope.attribution.metrics import summary_metrics
    except ImportError:
        return [], {}
    shaped = [name for name, result in maps.items() if result.values.shape == inputs.shape]
    if not shaped:
        return [], {}
    per_example = len(shaped) * cost_model.metric_passes(1, cost_model.forward_ratio(context))
    count = fit_count(context, len(inputs), per_example)
    found = cost_model.estimate_chunked(context, "Faithfulness metrics", count * per_example, chunk, 1.0)
    if not found.fits:
        blocks.extend(declined(found).blocks)
        costs.append({**found.to_dict(), "declined": "over budget"})
        return [], {}
    if count < len(inputs):
        blocks.append(
            Text(f"Faithfulness metrics on the first {count} of {len(inputs)} inputs (fitted to the budget).")
        )
    rows, numbers = [], {}

    def compute() -> None:
        for name in shaped:
            result = maps[name]
            try:
                metrics = summary_metrics(
                    model, inputs[:count], result.target[:count], result.values[:count],
                    None if mask is None else mask[:count], max_batch=chunk,
                )  # fmt: skip
            except DeepscopeError:
                continue
            row: dict[str, Any] = {"method": name}
            numbers[name] = {}
            for key, value in metrics.items():
                if isinstance(value, tuple):
                    row[key] = f"{value[0]:.3f} ± {value[1]:.3f}"
                    numbers[name][key] = {"mean": float(value[0]), "standard_error": float(value[1])}
            rows.append(row)

    cost_model.timed(costs, found, compute)
    return rows, numbers


def _sanity_check(context, model, inputs, results, chunk, costs, blocks) -> str:
    try:
        from deepscope.attribution.metrics import model_parameter_randomisation
    except ImportError:
        return ""
    layers_only = cost_model.randomisation_passes(model, 0)  # the copies, whatever the inputs
    per_example = cost_model.randomisation_passes(model, 1) - layers_only
    count = fit_count(context, len(inputs), per_example, fixed_passes=layers_only)
    passes = cost_model.randomisation_passes(model, count)
    found = cost_model.estimate_chunked(context, "Randomisation sanity check", passes, chunk, 1.0)
    if not found.fits:
        blocks.extend(declined(found).blocks)
        costs.append({**found.to_dict(), "declined": "over budget"})
        return ""
    try:
        check = cost_model.timed(
            costs,
            found,
            lambda: model_parameter_randomisation(
                model, inputs[:count], method="saliency", sum_channels=is_one_hot(inputs), max_batch=chunk
            ),
        )
    except DeepscopeError:
        return ""
    results["sanity_check"] = check.rows()
    return f"for saliency {check.verdict}" + (f" (on {count} of {len(inputs)} inputs)" if count < len(inputs) else "")
