"""The report's "Training" section (order 20), owned by the dynamics family.

The learning curves and the final train/test gap with its Wilson confidence interval when
deepscope trained the model (``context.history``); otherwise the model is evaluated on the train
and test splits and the section says that no curves exist. When the training was recorded by a
:class:`~deepscope.dynamics.Monitor`, its dynamics (sharpness, gradient norms, ...) are drawn
here too: they describe the training, not the trained model's curvature.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from deepscope.dynamics.monitor import DynamicsHistory
from deepscope.models.gap import GapEstimate, evaluation_gap
from deepscope.models.history import TrainingHistory
from deepscope.report.sections import AuditContext, Figure, Part, Section, Table, Text, register_section, run_block
from deepscope.report.svg import figure_to_svg

__all__ = ["training_section", "as_history"]


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


def dynamics_history(history: Any) -> DynamicsHistory | None:
    """The Monitor's :class:`DynamicsHistory` inside ``history`` (itself, ``.monitor`` or ``["monitor"]``), else None."""
    if isinstance(history, DynamicsHistory):
        return history
    for candidate in (getattr(history, "monitor", None), history.get("monitor") if isinstance(history, dict) else None):
        if isinstance(candidate, DynamicsHistory):
            return candidate
    return None


def _dynamics_part(context: AuditContext) -> Part:
    """The Monitor's recorded dynamics, when the training was monitored (else nothing)."""
    dynamics = dynamics_history(context.history)
    if dynamics is None:
        return Part()
    return Part(
        blocks=[Figure(figure_to_svg(dynamics.plot()), caption="Training dynamics recorded by the Monitor")],
        results={"dynamics": dynamics.rows()},
    )


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
        parts = [
            run_block(
                "Learning curves",
                lambda: Part(
                    [Figure(figure_to_svg(history.plot()), caption="Learning curves (epoch 0 = initial weights)")]
                ),
            ),
            Part(_gap_blocks(gap), {"history": history, "generalization_gap": gap}),
            Part([Table(history.rows(), caption="Per-epoch history (evaluated in eval mode)")]),
            run_block("Training dynamics", lambda: _dynamics_part(context)),
        ]
        return Section.from_parts(parts, summary=lambda _: summary)

    train_eval = problem.evaluate("train")
    test_eval = problem.evaluate("test") if problem.test is not None else None
    gap = None if test_eval is None else evaluation_gap(train_eval, test_eval)
    context.cache["training.generalization_gap"] = gap  # the generalization section's test-set bound reuses it
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
    parts = [Part(blocks, results), run_block("Training dynamics", lambda: _dynamics_part(context))]
    return Section.from_parts(parts, summary=lambda _: summary)
