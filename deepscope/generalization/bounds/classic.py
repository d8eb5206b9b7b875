"""Classic norm- and VC-based generalization bounds, evaluated numerically and reported honestly.

Each bound is ``training term + complexity term`` on the 0-1 error; on real networks they are far
above 1 (vacuous), and the point is to say by how much (Jiang et al. 2020; Nagarajan & Kolter 2019).
With n training examples, γ the 10th-percentile margin, R̂_γ the fraction of training margins ≤ γ,
``W_i`` the BatchNorm-folded layers (d of them, at most ``h`` units wide), ``B = max ‖x‖₂``,
``‖X‖₂ = √(Σ ‖x_i‖²)``:

* spectral margin (Bartlett, Foster & Telgarsky 2017, Thm 1.1, ReLU so ρ_i = 1):
  ``R̂_γ + 8/n + 72 ‖X‖₂ R ln(2h) ln(n)/(γ n) + 3 √(ln(1/δ)/(2n))`` with
  ``R = Π‖W_i‖₂ (Σ (‖W_iᵀ‖₂,₁/‖W_i‖₂)^{2/3})^{3/2}``;
* PAC-Bayes spectral (Neyshabur, Bhojanapalli & Srebro 2018, Thm 1; their O(·) constant taken as 1,
  so this is optimistic): ``R̂_γ + √((B² d² h ln(dh) Π‖W_i‖₂² Σ ‖W_i‖_F²/‖W_i‖₂² + ln(dn/δ)) / (γ² n))``;
* path norm (Neyshabur, Tomioka & Srebro 2015, Cor. 2 with p = 2, margin loss):
  ``R̂_γ + 2 · 2^d √φ B/(γ √n) + 3 √(ln(2/δ)/(2n))`` with φ the ℓ2 path norm ``Σ f_{w²}(1)``;
* VC (Bartlett et al. 2019: VCdim = O(W L log W) for ReLU nets, constant taken as 1; Vapnik's bound):
  ``err + √((8/n)(D ln(2en/D) + ln(4/δ)))`` with ``D = ω d log₂ ω`` (for D ≥ n, where the bound
  says nothing, its leading term √(8D/n) > 1 is reported).

A γ chosen after seeing the data needs a union bound over γ (lower-order terms, left out and
noted). Convolutions use the operator spectral norm and the kernel's ℓ2,1 norm.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

import torch

from deepscope._validation import check_probability
from deepscope.generalization._measures._context import build_context
from deepscope.generalization._measures._layers import layer_spectral_norm
from deepscope.generalization._measures.norms import path_norm
from deepscope.guard import current_guard_report
from deepscope.registry import analysis
from deepscope.results import Result

if TYPE_CHECKING:
    from deepscope.problem import Problem

__all__ = ["ClassicBound", "ClassicBounds", "classic_bounds"]


@dataclasses.dataclass(frozen=True)
class ClassicBound:
    """One bound: its value, its two terms, how many times above 1 it is, and its caveats."""

    name: str
    reference: str
    value: float
    training_term: float
    complexity_term: float
    times_above_one: float
    vacuous: bool
    note: str


@dataclasses.dataclass(frozen=True)
class ClassicBounds(Result):
    """The classic bounds on the 0-1 error, with the training error and margin they use."""

    bounds: list[ClassicBound]
    train_error: float
    margin: float
    n: int
    delta: float
    note: str = ""

    def rows(self) -> list[dict]:
        return [dataclasses.asdict(bound) for bound in self.bounds]

    def summary(self) -> str:
        vacuous = [b.name for b in self.bounds if b.vacuous]
        if not vacuous:
            return "Every classic bound is below 1 on this model."
        worst = max(self.bounds, key=lambda b: b.times_above_one if math.isfinite(b.times_above_one) else 0.0)
        return (
            f"{len(vacuous)} of {len(self.bounds)} classic bounds are vacuous (above 1); the loosest, "
            f"{worst.name}, is {worst.times_above_one:.3g} times above 1."
        )


def _bound(name, reference, training, complexity, note) -> ClassicBound:
    value = training + complexity if math.isfinite(complexity) else math.nan
    return ClassicBound(name, reference, value, training, complexity, value, not (value <= 1.0), note)


@analysis(takes="problem", family="generalization", fixture="relu_mlp", example_kwargs={"max_samples": 16})
def classic_bounds(problem: Problem, delta: float = 0.05, *, max_samples: int | None = None) -> ClassicBounds:
    """Evaluate the spectral-margin, PAC-Bayes-spectral, path-norm and VC bounds on the training set.

    Args:
        problem: a :class:`deepscope.Problem` with a classification loss.
        delta: failure probability, in (0, 1).
        max_samples: training examples used (None: all; the bounds assume all n of them).

    Returns:
        :class:`ClassicBounds`, one row per bound, with ``times_above_one`` (the bound itself,
        since a bound on an error is vacuous above 1).
    """
    delta = check_probability(delta, "delta", "classic_bounds")
    ctx = build_context(problem, max_samples=max_samples, seed=0)
    n = len(ctx.y)
    margins = ctx.margins()
    gamma = ctx.margin()
    train_error = float((margins <= 0).double().mean())
    margin_loss = float((margins <= gamma).double().mean())
    spec = [layer_spectral_norm(layer)[0] for layer in ctx.folded]
    fro_sq = [float(layer.weight.double().pow(2).sum()) for layer in ctx.folded]
    l21 = [float(layer.matrix().double().norm(dim=1).sum()) for layer in ctx.folded]
    widths = [layer.weight.shape[0] for layer in ctx.folded]
    # the three margin bounds read the input norms ‖x‖: defined for float tensor inputs only (token ids
    # are indices, a dict of named inputs has no one norm); they are then NaN with this note, as the path norm
    float_inputs = isinstance(ctx.x, torch.Tensor) and ctx.x.is_floating_point()
    input_note = "" if float_inputs else "needs float tensor inputs (token ids or named inputs have no norm ‖x‖)"
    b_max = x_norm = math.nan
    if float_inputs:
        widths.append(int(ctx.x[0].numel()))
        flat = ctx.x.reshape(n, -1).double()
        b_max = float(flat.norm(dim=1).max())
        x_norm = float(flat.pow(2).sum().sqrt())
    h, d = max(widths), ctx.depth
    omega = ctx.num_params
    gamma_note = "γ chosen from the data (union bound over γ left out)"
    relu_note = (
        "" if not ctx.structure.non_homogeneous else "assumes ReLU; found " + ", ".join(ctx.structure.non_homogeneous)
    )
    notes = "; ".join(x for x in (gamma_note, relu_note, input_note) if x)
    bounds = []
    if gamma > 0:
        r = math.prod(spec) * sum((a / s) ** (2 / 3) for a, s in zip(l21, spec, strict=True)) ** 1.5
        complexity = (
            8 / n
            + 72 * x_norm * r * math.log(2 * h) * math.log(n) / (gamma * n)
            + 3 * math.sqrt(math.log(1 / delta) / (2 * n))
        )
        bounds.append(_bound("spectral_margin", "Bartlett et al. 2017", margin_loss, complexity, notes))
        product = math.prod(s**2 for s in spec) * sum(f / s**2 for f, s in zip(fro_sq, spec, strict=True))
        inner = b_max**2 * d**2 * h * math.log(d * h) * product + math.log(d * n / delta)
        bounds.append(
            _bound(
                "pac_bayes_spectral",
                "Neyshabur et al. 2018",
                margin_loss,
                math.sqrt(inner / (gamma**2 * n)),
                notes + "; O(·) constant taken as 1 (optimistic)",
            )
        )
        phi = path_norm(ctx) if not relu_note and float_inputs else math.nan
        complexity = 2 * 2**d * math.sqrt(phi) * b_max / (gamma * math.sqrt(n)) + 3 * math.sqrt(
            math.log(2 / delta) / (2 * n)
        )
        bounds.append(_bound("path_norm", "Neyshabur et al. 2015", margin_loss, complexity, notes))
    else:
        for name, reference in (
            ("spectral_margin", "Bartlett et al. 2017"),
            ("pac_bayes_spectral", "Neyshabur et al. 2018"),
            ("path_norm", "Neyshabur et al. 2015"),
        ):
            bounds.append(_bound(name, reference, margin_loss, math.nan, "the 10th-percentile margin is <= 0"))
    vc_dimension = omega * d * math.log2(max(omega, 2))
    vc_note = f"D = ω·d·log2 ω = {vc_dimension:.3g} vs n = {n} (constant taken as 1)"
    if vc_dimension < n:
        complexity = math.sqrt(8 / n * (vc_dimension * math.log(2 * math.e * n / vc_dimension) + math.log(4 / delta)))
    else:  # Sauer's lemma needs n > D; past it the bound says nothing, reported by its leading term √(8D/n)
        complexity = math.sqrt(8 * vc_dimension / n)
        vc_note += "; D >= n, reported as √(8D/n)"
    bounds.append(
        _bound(
            "vc_relu",
            "Bartlett et al. 2019; Vapnik 1998",
            train_error,
            complexity,
            vc_note,
        )
    )
    report = current_guard_report(problem.model)
    return ClassicBounds(
        bounds=bounds,
        train_error=train_error,
        margin=gamma,
        n=n,
        delta=delta,
        note=getattr(report, "note", "") if report is not None else "",
    )
