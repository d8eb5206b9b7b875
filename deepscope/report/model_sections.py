"""The report's first two sections: the model card (order 10) and training (order 20).

* ``model_card``: :func:`deepscope.models.model_summary` of the audited model — one plain sentence,
  the totals, the architecture table (one row per layer with its output shape) and a bar chart
  of parameters per layer.
* ``training``: the learning curves and the final train/test gap with its Wilson confidence
  interval when deepscope trained the model (``context.history``); otherwise the model is
  evaluated on the train and test splits and the section says that no curves exist.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from deepscope.models.gap import GapEstimate, generalization_gap
from deepscope.models.history import TrainingHistory
from deepscope.models.summary import ModelSummary, model_summary
from deepscope.report.sections import AuditContext, Figure, Section, Table, Text, register_section
from deepscope.report.svg import figure_to_svg

__all__ = ["model_card_section", "training_section", "as_history"]


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
    summary = model_summary(context.problem.model, example_inputs=_example_inputs(context))
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
    blocks.append(
        Table(
            rows,
            caption="Architecture: one row per layer (output shape for one example; calls in one forward pass)",
        )
    )
    if any(row["parameters"] for row in rows):
        blocks.append(Figure(figure_to_svg(summary.plot()), caption="Parameters per layer"))
    return Section(summary=summary.sentence(context.model_name), blocks=blocks, results={"model_summary": summary})


def as_history(history: Any) -> TrainingHistory | None:
    """A TrainingHistory from a TrainingHistory, a TrainingRun, or a dict with its fields (else None)."""
    if isinstance(history, TrainingHistory):
        return history
    inner = getattr(history, "history", None)
    if isinstance(inner, TrainingHistory):
        return inner
    if isinstance(history, Mapping) and "train_loss" in history:
        data = history.get("history", history) if "epoch" not in history else history
        epochs = list(data.get("epoch", range(len(data["train_loss"]))))
        n = len(epochs)
        return TrainingHistory(
            epoch=epochs,
            train_loss=list(data["train_loss"]),
            test_loss=list(data.get("test_loss") or [None] * n),
            train_accuracy=list(data.get("train_accuracy") or [None] * n),
            test_accuracy=list(data.get("test_accuracy") or [None] * n),
            n_train=int(data.get("n_train", 0)),
            n_test=int(data.get("n_test", 0)),
            steps=int(data.get("steps", 0)),
            monitor=data.get("monitor"),
        )
    return None


def _gap_blocks(gap: GapEstimate | None) -> list[Any]:
    if gap is None:
        return [Text("There is no test split, so the generalisation gap cannot be measured.")]
    rows = [
        {
            f"train {gap.metric}": gap.train_error,
            f"test {gap.metric}": gap.test_error,
            "gap": gap.gap,
            f"{gap.confidence:.0%} interval": "" if gap.lower is None else f"[{gap.lower:+.4f}, {gap.upper:+.4f}]",
            "test examples": gap.n_test,
            "metric": gap.metric,
        }
    ]
    return [
        Text(gap.sentence()),
        Table(rows, caption=f"Generalisation gap (test - train {gap.metric}); interval: {gap.method}"),
    ]


@register_section("training", title="Training", order=20)
def training_section(context: AuditContext) -> Section:
    """Learning curves and the train/test gap (or a plain evaluation when deepscope did not train the model)."""
    history = as_history(context.history)
    problem = context.problem
    if history is not None:
        gap = history.generalization_gap
        final_epoch = history.epoch[-1]
        if history.train_accuracy[-1] is not None:
            test_text = "" if gap is None else f" and {history.test_accuracy[-1]:.1%} test accuracy"
            summary = (
                f"After {final_epoch} epochs the model reached {history.train_accuracy[-1]:.1%} train accuracy"
                f"{test_text}."
            )
        else:
            summary = f"After {final_epoch} epochs the train loss is {history.train_loss[-1]:.4g}."
        blocks: list[Any] = [
            Figure(figure_to_svg(history.plot()), caption="Learning curves (epoch 0 = initial weights)")
        ]
        blocks += _gap_blocks(gap)
        blocks.append(Table(history.rows(), caption="Per-epoch history (evaluated in eval mode)"))
        return Section(summary=summary, blocks=blocks, results={"history": history, "generalization_gap": gap})

    train_eval = problem.evaluate("train")
    test_eval = problem.evaluate("test") if problem.test is not None else None
    gap = None
    if test_eval is not None:
        gap = generalization_gap(
            train_eval.accuracy,
            test_eval.accuracy,
            test_eval.n,
            n_train=train_eval.n,
            train_loss=train_eval.loss,
            test_loss=test_eval.loss,
        )
    if train_eval.accuracy is not None:
        test_text = "" if test_eval is None else f" and {test_eval.accuracy:.1%} test accuracy"
        summary = f"The model has {train_eval.accuracy:.1%} train accuracy{test_text}; deepscope did not train it."
    else:
        test_text = "" if test_eval is None else f" and test loss {test_eval.loss:.4g}"
        summary = f"The model has train loss {train_eval.loss:.4g}{test_text}; deepscope did not train it."
    rows = [{"split": "train", "loss": train_eval.loss, "accuracy": train_eval.accuracy, "examples": train_eval.n}]
    if test_eval is not None:
        rows.append({"split": "test", "loss": test_eval.loss, "accuracy": test_eval.accuracy, "examples": test_eval.n})
    blocks = [
        Text(
            "This model was not trained by deepscope, so no learning curves exist; "
            "below are its loss and accuracy on each split (eval mode)."
        ),
        Table(rows, caption="Evaluation"),
        *_gap_blocks(gap),
    ]
    results = {"evaluation": rows, "generalization_gap": gap}
    return Section(summary=summary, blocks=blocks, results=results)
