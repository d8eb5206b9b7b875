"""The report's "Model card" section (order 10), owned by the models family.

:func:`deepscope.models.model_summary` of the audited model — one plain sentence, the totals, the
architecture table (one row per layer with its output shape) and a bar chart of parameters per
layer. Every block is drawn from the one :class:`~deepscope.models.ModelSummary`, so the section
stands or falls with it (the report then shows its error).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from deepscope.models.summary import ModelSummary, model_summary
from deepscope.report.sections import AuditContext, Figure, Section, Table, Text, register_section
from deepscope.report.svg import figure_to_svg

__all__ = ["model_card_section"]


def _example_inputs(context: AuditContext):
    """Two real training inputs, so the trace sees the data's dtype and values (not zeros).

    Read from the train data source itself, not through the Problem's evaluation path: a model the
    Problem refused (non-finite weights) still gets its model card.
    """
    x, _ = next(context.problem.train.batches(batch_size=2))
    return x


def _shape_text(shape: Any) -> str:
    if isinstance(shape, tuple):
        return " × ".join(str(s) for s in shape) if shape else "scalar"
    return "" if shape is None else str(shape)


def _counts_text(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{name} ×{count}" if count > 1 else name for name, count in counts.items()) or "none"


def _totals(summary: ModelSummary) -> list[dict[str, Any]]:
    functional = (
        "unknown (torch.fx could not trace the model)"
        if summary.functional_activations is None
        else (", ".join(summary.functional_activations) or "none")
    )
    return [
        {"quantity": "parameters", "value": f"{summary.total_parameters:,}"},
        {"quantity": "trainable parameters", "value": f"{summary.trainable_parameters:,}"},
        {"quantity": "buffer elements", "value": f"{summary.buffer_elements:,}"},
        {"quantity": "memory (parameters + buffers)", "value": f"{summary.memory_bytes / 1024:.1f} KiB"},
        {"quantity": "input shape (one example)", "value": _shape_text(summary.input_shape)},
        {"quantity": "output shape (one example)", "value": _shape_text(summary.output_shape)},
        {"quantity": "layer types", "value": _counts_text(summary.layer_types)},
        {"quantity": "activation modules", "value": _counts_text(summary.activation_modules)},
        {"quantity": "functional activations", "value": functional},
    ]


@register_section("model_card", title="Model card", order=10)
def model_card_section(context: AuditContext) -> Section:
    """Architecture table, parameter counts, layer types and activation functions of the audited model."""
    inputs = _example_inputs(context)
    traced_note = None
    if isinstance(inputs, Mapping):  # model_summary traces one tensor argument; a dict of tensors is called by name
        traced_note = (
            "Output shapes per layer are not traced: this model takes a dict of tensors ("
            + ", ".join(map(str, inputs))
            + "), and the summary's trace takes one tensor; counts and layer types are complete."
        )
        inputs = None
    summary = model_summary(context.problem.model, example_inputs=inputs)
    rows = [
        {
            "layer": row["name"],
            "type": row["type"],
            "output shape": _shape_text(row["output_shape"]),
            "parameters": row["parameters"],
            "trainable": row["trainable"],
            "calls": row["calls"],
        }
        for row in summary.rows()
    ]
    blocks: list[Any] = [Table(_totals(summary), caption="Totals")]
    if summary.note:
        blocks.append(Text(summary.note))
    if traced_note:
        blocks.append(Text(traced_note))
    blocks.append(
        Table(
            rows,
            caption="Architecture: one row per layer (output shape for one example; calls in one forward pass)",
        )
    )
    if any(row["parameters"] for row in rows):
        blocks.append(Figure(figure_to_svg(summary.plot()), caption="Parameters per layer"))
    return Section(summary=summary.sentence(context.model_name), blocks=blocks, results={"model_summary": summary})
