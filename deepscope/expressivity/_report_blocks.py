"""Plumbing of the expressivity section's blocks: applicability, declining, isolation, the Kac-Rice sample.

Private helper of :mod:`deepscope.expressivity.report_section` (the only module that imports it).
Each block either says in one line why it does not apply (:func:`not_applicable`), declines in one
line when its priced cost does not fit (:func:`decline`, :func:`deepscope.report.cost.declined`), or
runs under :func:`isolated`, where an exception becomes the block's error box and an
``UnsupportedModelError`` (a layer the analysis cannot follow) becomes one "not applicable" line.
Costs are in example passes (forward + backward) of the measured probe
(:func:`deepscope.report.cost.pass_cost`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from deepscope.errors import UnsupportedModelError
from deepscope.report.cost import declined, fit_count, pass_cost
from deepscope.report.sections import AuditContext, Part, Text, run_block

__all__ = [
    "KAC_RICE_BYTES",
    "KAC_RICE_PASSES",
    "decline",
    "forward_ratio",
    "input_reason",
    "isolated",
    "kac_rice_sample",
    "not_applicable",
    "section_summary",
]

KAC_RICE_PASSES = 6.0  # per example of the Kac-Rice density: two float64 passes with every pre-activation kept
KAC_RICE_BYTES = 1e9  # the Kac-Rice sample's recorded pre-activations stay under this many bytes


def section_summary(sentences: list[str]) -> str:
    """The section's summary: the blocks' sentences, or why none applied."""
    if not sentences:
        return "No expressivity analysis applied to this model (each block below says why)."
    return " ".join(sentences)


def input_reason(inputs: Any) -> str | None:
    """Why the input-space analyses do not apply (token ids, a dict of tensors), or None for float inputs."""
    if isinstance(inputs, Mapping):
        return (
            "it studies the network as a function of continuous input vectors, and this model's inputs are a dict "
            f"of tensors ({', '.join(map(str, inputs))})"
        )
    if isinstance(inputs, torch.Tensor) and not inputs.is_floating_point():
        return (
            "it studies the network as a function of continuous input vectors, and this model's inputs are integer "
            "token ids"
        )
    return None


def not_applicable(blocks: list[Any], cost: dict[str, Any], label: str, reason: str) -> None:
    """One line saying that ``label`` does not apply to this model, and why."""
    reason = reason.rstrip(".")
    blocks.append(Text(f"{label} — not applicable: {reason}."))
    cost["not_applicable"] = reason


def decline(blocks: list[Any], cost: dict[str, Any], found: Any, reason: str = "") -> None:
    """One line saying that the block declined (:func:`deepscope.report.cost.declined`)."""
    part = declined(found, reason)
    blocks += part.blocks
    cost.update(part.cost)


def forward_ratio(context: AuditContext) -> float:
    """A forward pass's share of one measured example pass (forward + backward)."""
    unit = pass_cost(context)
    return unit.forward_seconds / unit.seconds


def kac_rice_sample(context: AuditContext, budget: dict[str, Any], units: int) -> int:
    """Examples for the Kac-Rice density: its float64 passes fit half a block and its arrays 1 GB."""
    per_example = KAC_RICE_PASSES * forward_ratio(context)
    by_time = fit_count(context, budget["n"], per_example, minimum=4, share=0.5)
    by_memory = max(4, int(KAC_RICE_BYTES // (units * 8 * 6)))  # six float64 arrays of (examples, units)
    return min(by_time, by_memory)


def isolated(label: str, fill: Callable[[list[Any], dict[str, Any], list[str], dict[str, Any]], None]) -> Part:
    """Run one block that fills blocks, results, summary sentences and its cost; an exception becomes its error box."""

    def build() -> Part:
        blocks: list[Any] = []
        results: dict[str, Any] = {}
        sentences: list[str] = []
        cost: dict[str, Any] = {}
        try:
            fill(blocks, results, sentences, cost)
        except UnsupportedModelError as error:  # a layer this analysis cannot follow (a global max): one line
            del blocks[:], sentences[:]
            not_applicable(blocks, cost, label, str(error))
        return Part(blocks, results, " ".join(sentences), cost=cost)

    return run_block(label, build)
