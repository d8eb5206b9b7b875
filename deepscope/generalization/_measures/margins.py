"""Output-based measures: the 10th-percentile margin, 1/margin² and the output entropy.

The margin of a training example is ``f(x)_y − max_{j≠y} f(x)_j`` (positive when it is classified
correctly); γ is its 10th percentile over the training set, and ``1/γ²`` is the inverse-margin
measure (Jiang et al. 2020, Sec. C). The output entropy is the mean Shannon entropy (nats) of the
softmax outputs on the training set (Pereyra et al. 2017).
"""

from __future__ import annotations

import math

import torch

from deepscope.generalization._measures._context import MeasureContext, MeasureValue

__all__ = ["margin_measures", "output_entropy"]


def output_entropy(ctx: MeasureContext) -> float:
    """Mean entropy (nats) of ``softmax(f(x))`` over the training subset."""
    log_p = torch.log_softmax(ctx.outputs().double(), dim=-1)
    return float(-(log_p.exp() * log_p).sum(dim=-1).mean())


def margin_measures(ctx: MeasureContext) -> list[MeasureValue]:
    """γ (10th-percentile margin), 1/γ² and the output entropy."""
    gamma = ctx.margin()
    note = "" if gamma > 0 else "the 10th-percentile margin is <= 0 (many training errors)"
    return [
        MeasureValue(
            "margin_10th_percentile",
            gamma,
            "margin",
            "Jiang et al. 2020",
            "γ, 10th-percentile output margin (larger is better)",
        ),
        MeasureValue(
            "inverse_margin",
            1.0 / gamma**2 if gamma > 0 else math.nan,
            "margin",
            "Jiang et al. 2020",
            "1/γ²",
            False,
            note,
        ),
        MeasureValue(
            "output_entropy", output_entropy(ctx), "margin", "Pereyra et al. 2017", "mean softmax entropy (nats)"
        ),
    ]
