"""Integrated gradients on typical work: the typical digits CNN (bench/typical.py) vs Captum.

Part of ``python -m bench.bench_attribution`` (``--only ig`` reruns just the integrated-gradients rows).
"""

from __future__ import annotations

import torch

from bench.bench_attribution import TOL, captum_ig, captum_steps_for
from bench.harness import compare_alternating
from bench.typical import TYPICAL_CNN, typical_cnn
from deepscope.attribution import integrated_gradients

__all__ = ["typical_ig_row", "TYPICAL_GRID"]

TYPICAL_GRID = (8, 16, 24, 32, 50, 64, 100, 128, 256, 512)


def _relative_l1(values: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    return (values - reference).abs().flatten(1).sum(1) / reference.abs().flatten(1).sum(1)


def typical_ig_row() -> dict:
    """IG on the typical digits CNN (bench/typical.py), 256 test digits, every example within 1%.

    Captum gets the smallest step count of ``TYPICAL_GRID`` at which every example is within 1%
    (the search is not timed); deepscope runs its adaptive mode (``steps=None, tol=0.01``). The
    previous adaptive mode (Gauss-Legendre restarted at 8, 16, 32, ... steps) is timed alongside.
    """
    model, digits = typical_cnn()
    x = torch.as_tensor(digits.x_test[:256])
    with torch.no_grad():
        target = model(x).argmax(1)
    steps, captum_worst = captum_steps_for(model, x, target, grid=TYPICAL_GRID)
    ours = integrated_gradients(model, x, target, steps=None, tol=TOL)
    old = integrated_gradients(model, x, target, steps=None, tol=TOL, rule="gausslegendre", initial_steps=8)
    reference = integrated_gradients(model, x, target, steps=1023, rule="fejer2").values
    ours_l1 = _relative_l1(ours.values, reference)
    captum_l1 = _relative_l1(captum_ig(model, x, target, steps), reference)
    row = compare_alternating(
        f"integrated gradients, TYPICAL MODEL ({TYPICAL_CNN}), {len(x)} digits, every example within {TOL:.0%} "
        "completeness",
        ours=lambda: integrated_gradients(model, x, target, steps=None, tol=TOL),
        reference=lambda: captum_ig(model, x, target, steps),
        reference_name="Captum 0.9 IntegratedGradients",
        repeats=7,
        agreement=(
            f"worst completeness error: deepscope {float(ours.diagnostics['completeness_error'].max()):.2%}, "
            f"Captum {captum_worst:.2%}; attribution vs a 1023-node reference (relative L1, median / max): "
            f"deepscope {float(ours_l1.median()):.2%} / {float(ours_l1.max()):.2%}, "
            f"Captum {float(captum_l1.median()):.2%} / {float(captum_l1.max()):.2%}"
        ),
        notes=(
            f"Captum needs {steps} Gauss-Legendre steps (smallest of {{{', '.join(map(str, TYPICAL_GRID[:6]))}, ...}} "
            f"bringing every example under 1%); deepscope's nested Fejér levels used "
            f"{ours.diagnostics['steps'].float().mean():.1f} nodes on average (max {int(ours.diagnostics['steps'].max())}), "
            f"{ours.model_evaluations} rows in all; the previous adaptive mode (Gauss-Legendre restarted at 8, 16, "
            f"32, ...) used {old.model_evaluations} rows"
        ),
    )
    previous = compare_alternating(
        "previous adaptive mode on the typical model",
        ours=lambda: integrated_gradients(model, x, target, steps=None, tol=TOL),
        reference=lambda: integrated_gradients(
            model, x, target, steps=None, tol=TOL, rule="gausslegendre", initial_steps=8
        ),
        reference_name="",
        repeats=5,
    )
    row["notes"] += f"; new / previous adaptive mode: {previous['speedup']:.2f}x faster (same process)"
    return row
