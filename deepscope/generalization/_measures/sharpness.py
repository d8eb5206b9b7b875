"""Flatness measures: PAC-Bayes sharpness σ, magnitude-aware σ', worst-case sharpness α.

Following Jiang et al. (2020, Sec. C; Keskar et al. 2017; Neyshabur et al. 2017):

* σ is the largest standard deviation of isotropic Gaussian weight noise ``u ~ N(0, σ² I)`` for
  which the expected training accuracy drops by at most 0.1. It is found by bisection on σ, each
  step a Monte-Carlo average over ``samples`` noise draws. Measures:
  ``pac_bayes_orig = ‖w‖²/(4σ²) + log(m/σ) + 10``, ``pac_bayes_init = ‖w − w⁰‖²/(4σ²) + log(m/σ) + 10``,
  ``pac_bayes_flatness = 1/σ²``.
* σ' is the same search for magnitude-aware noise ``u_i ~ N(0, σ'² w_i² + ε²)``, ε = 1e-3:
  ``pac_bayes_mag_init = ¼ Σ_i log((ε² + (σ'² + 1) ‖w − w⁰‖²/ω) / (ε² + σ'² (w_i − w⁰_i)²)) + log(m/σ') + 10``
  (``orig`` with ``w`` in place of ``w − w⁰``) and ``pac_bayes_mag_flatness = 1/σ'²``.
* α is the largest box radius for which gradient ascent on the weights (``|u_i| ≤ α``, projected
  sign-gradient steps on the training cross-entropy) lowers training accuracy by at most 0.1:
  ``sharpness_orig = ‖w‖² log(2ω)/(4α²) + log(m/α) + 10`` (and ``_init``), ``sharpness_flatness = 1/α²``.

All perturbations are applied to a new parameter dict passed to ``torch.func.functional_call``; the
caller's module is never modified. Every search reports its forward-pass count and sample counts.

Cost without changing a value: an evaluation's draws are interleaved chunk by chunk, the examples
in order of increasing clean margin, and a radius is rejected as soon as the drop's lower bound
exceeds 0.1 (:func:`_drops`); accepted radii are evaluated in full, and the noise of every
evaluation is drawn in full, so radii, drops and errors are those of the full evaluation. On the
typical digits CNN (1,347 examples) σ's search took 77 instead of 91 passes over the subset.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable

import torch

from deepscope._inputs import slice_rows
from deepscope.generalization._measures._context import MeasureContext, MeasureValue
from deepscope.generalization._measures._cost import MEMORY_BUDGET

__all__ = ["SharpnessSearch", "pac_bayes_sigma", "worst_case_sharpness", "sharpness_measures"]

_EPSILON = 1e-3
_TARGET_DROP = 0.1


@dataclasses.dataclass(frozen=True)
class SharpnessSearch:
    """The outcome of a bisection: radius found, estimated accuracy drop there and its cost."""

    radius: float
    accuracy_drop: float
    standard_error: float
    steps: int
    samples_per_step: int
    forward_passes: int
    capped: bool = False  # no radius up to the cap lowered accuracy by 0.1 (e.g. a chance-level model)
    upper: float = math.inf  # the bracket's upper end: the crossing radius is in [radius, upper)
    backward_passes: int = 0


_MAX_DOUBLINGS = 12


def _bisect(drop_at, low: float, high: float, steps: int) -> tuple[float, float, float, bool, float]:
    """Largest radius with drop <= 0.1, bisected in log space.

    The bracket is found first: if the starting radius ``high`` costs no more than 0.1 accuracy it
    is doubled (at most 12 times; the cap flag of the result then says the cap was hit), and
    if it already costs more it is halved (at most 12 times) until a radius that keeps the drop
    <= 0.1 gives the bracket a positive lower end. (A zero lower end would make every geometric
    midpoint zero, and the search would report radius 0.)

    Returns ``(radius, drop, standard_error, capped, upper)``: ``upper`` is the smallest radius
    found to cost more than 0.1 (the bracket's upper end, ``inf`` when capped), so the radius
    where the drop crosses 0.1 is in ``[radius, upper)``; each bisection step halves
    ``log(upper / radius)`` (``steps`` steps after a doubling: ``upper / radius = 2^(2^−steps)``).
    The noise draws of every evaluation are the same whatever ``steps`` is (each evaluation
    consumes the generator in full), so a search with fewer steps evaluates the first radii of one
    with more, and its bracket contains the other's radius.
    """
    drop, error = drop_at(high)
    best = (low, 0.0, 0.0)
    if drop <= _TARGET_DROP:
        doublings = 0
        while drop <= _TARGET_DROP:
            if doublings == _MAX_DOUBLINGS:
                return high, drop, error, True, math.inf
            low, best = high, (high, drop, error)
            high = high * 2.0
            drop, error = drop_at(high)
            doublings += 1
    else:
        for _ in range(_MAX_DOUBLINGS):
            candidate = high / 2.0
            drop, error = drop_at(candidate)
            if drop <= _TARGET_DROP:
                low, best = candidate, (candidate, drop, error)
                break
            high = candidate
        else:
            return best[0], best[1], best[2], False, high  # even high / 2**12 costs more than 0.1
    for _ in range(steps):
        middle = math.sqrt(low * high)
        drop, error = drop_at(middle)
        if drop <= _TARGET_DROP:
            low, best = middle, (middle, drop, error)
        else:
            high = middle
    return (*best, False, high)


def _drops(
    ctx: MeasureContext,
    base: float,
    samples: int,
    draw: Callable[[bool], dict[str, torch.Tensor]],
    bounds: list[tuple[int, int]],
    *,
    early_rejection: bool = True,
) -> list[float] | None:
    """Accuracy drops ``base − acc_i`` of ``samples`` weight draws, or None once their mean surely exceeds 0.1.

    ``draw(build)`` makes the next draw's parameters; ``draw(False)`` only consumes its random
    numbers, so every evaluation consumes the generator in full and the draws of later
    evaluations do not depend on where this one stopped. As many draws as the memory budget allows
    are held at once and evaluated chunk by chunk (``bounds``), the examples in order of increasing
    clean margin (those noise flips first come first). After each chunk of a draw with ``c_i``
    of its ``s_i`` examples seen correct, ``drop_i ≥ base − (c_i + n − s_i)/n`` (the unseen
    examples at best all right; a draw not begun: ``drop_i ≥ base − 1``), so the radius is rejected
    as soon as ``Σ_i (base − (c_i + n − s_i)/n) > 0.1 · samples``: the same decision as the full
    evaluation, whose mean is at least that bound. An accepted radius is always evaluated in full,
    so its reported drops are those of every example of every draw.
    """
    n = ctx.n
    order = ctx.margin_order()
    param_bytes = sum(p.numel() * p.element_size() for p in ctx.params.values())
    group = max(1, min(samples, MEMORY_BUDGET // max(param_bytes, 1)))
    limit = samples * (_TARGET_DROP + 1e-12)  # the slack covers the rounding of the bound's float sum
    hits: list[list[torch.Tensor]] = [[] for _ in range(samples)]
    wrong = 0  # examples seen misclassified, over all draws
    rejected = False
    for first in range(0, samples, group):
        held = [draw(not rejected) for _ in range(first, min(samples, first + group))]
        if rejected:
            continue
        for start, end in bounds:
            index = order[start:end]
            for offset, params in enumerate(held):
                hit = ctx.correct(params, index)
                hits[first + offset].append(hit)
                wrong += len(index) - int(hit.sum())
                if early_rejection and samples * base - (samples * n - wrong) / n > limit:
                    rejected = True
                    break
            if rejected:
                break
    if rejected:
        return None
    # the mean of the 0/1 hits is exact in float64 whatever their order (integer sum, one division)
    return [base - float(torch.cat(pieces).double().mean()) for pieces in hits]


def pac_bayes_sigma(
    ctx: MeasureContext,
    *,
    magnitude_aware: bool = False,
    samples: int = 8,
    steps: int = 10,
    chunk: int | None = None,
    early_rejection: bool = True,
) -> SharpnessSearch:
    """σ (or σ' when ``magnitude_aware``): largest Gaussian noise that costs <= 0.1 train accuracy.

    ``chunk``: examples per forward pass (None: a cache-sized chunk, see ``_cost``).
    ``early_rejection=False`` evaluates every draw of every radius in full (the same search, more
    passes: the reference of the tests).
    """
    start = ctx.forward_passes
    base = ctx.accuracy()
    generator = torch.Generator(device="cpu").manual_seed(ctx.seed)
    bounds = ctx.search_bounds(chunk)

    def drop_at(sigma: float) -> tuple[float, float]:
        def draw(build: bool) -> dict[str, torch.Tensor]:
            noisy = {}
            for name, w in ctx.params.items():
                z = torch.randn(w.shape, generator=generator, dtype=w.dtype).to(w.device)
                if build:  # the draw is made anyway: later draws stay those of the full search
                    scale = torch.sqrt(sigma**2 * w**2 + _EPSILON**2) if magnitude_aware else sigma
                    noisy[name] = w + scale * z
            return noisy

        drops = _drops(ctx, base, samples, draw, bounds, early_rejection=early_rejection)
        if drops is None:
            return math.inf, math.nan  # a rejected radius: its drop is never reported
        values = torch.tensor(drops, dtype=torch.float64)
        return float(values.mean()), float(values.std() / math.sqrt(samples)) if samples > 1 else 0.0

    radius, drop, error, capped, upper = _bisect(drop_at, 0.0, 1e-3 if not magnitude_aware else 1e-2, steps)
    return SharpnessSearch(radius, drop, error, steps, samples, ctx.forward_passes - start, capped, upper)


def worst_case_sharpness(
    ctx: MeasureContext,
    *,
    ascent_steps: int = 5,
    steps: int = 10,
    chunk: int | None = None,
    early_rejection: bool = True,
) -> SharpnessSearch:
    """α: largest box radius where projected sign-gradient ascent costs <= 0.1 train accuracy.

    Each ascent step needs the gradient of the mean training loss at ``w + u``; it is summed over
    equal chunks of at most ``chunk`` examples (None: a cache-sized chunk, see ``_cost``), weighted
    by their share of the subset, so the memory does not grow with the number of examples. The
    accuracy at the end of the ascent is evaluated chunk by chunk and stops once the drop surely
    exceeds 0.1 (``early_rejection``; see :func:`_drops`).
    """
    start, start_backward = ctx.forward_passes, ctx.backward_passes
    base = ctx.accuracy()
    generator = torch.Generator(device="cpu").manual_seed(ctx.seed + 1)
    names = list(ctx.params)
    ascent_bounds = ctx.search_bounds(chunk, backward=True)
    bounds = ctx.search_bounds(chunk)
    n = ctx.n

    def loss_gradient(u: dict[str, torch.Tensor]) -> list[torch.Tensor | None]:
        leaves = [u[k].clone().requires_grad_(True) for k in names]
        total: list[torch.Tensor | None] = [None] * len(names)
        for first, end in ascent_bounds:
            x, y = slice_rows(ctx.x, first, end), ctx.y[first:end]
            with torch.enable_grad():
                perturbed = {k: ctx.params[k] + leaf for k, leaf in zip(names, leaves, strict=True)}
                loss = ctx.problem.criterion(ctx.problem.forward(perturbed, x), y)
                weight = len(y) / n
                grads = torch.autograd.grad(loss * weight if weight != 1 else loss, leaves, allow_unused=True)
            total = [g if t is None else (t if g is None else t + g) for t, g in zip(total, grads, strict=True)]
        ctx.forward_passes += n
        ctx.backward_passes += n
        return total

    def drop_at(alpha: float) -> tuple[float, float]:
        u = {
            k: (torch.rand(p.shape, generator=generator, dtype=p.dtype).to(p.device) * 2 - 1) * alpha
            for k, p in ctx.params.items()
        }
        for _ in range(ascent_steps):
            for k, g in zip(names, loss_gradient(u), strict=True):
                if g is not None:
                    u[k] = (u[k] + 0.5 * alpha * g.sign()).clamp(-alpha, alpha).detach()
        perturbed = {k: ctx.params[k] + u[k] for k in names}
        drops = _drops(ctx, base, 1, lambda build: perturbed, bounds, early_rejection=early_rejection)
        return (math.inf, math.nan) if drops is None else (drops[0], 0.0)

    radius, drop, error, capped, upper = _bisect(drop_at, 0.0, 1e-3, steps)
    return SharpnessSearch(
        radius, drop, error, steps, 1, ctx.forward_passes - start, capped, upper, ctx.backward_passes - start_backward
    )


def _squared_norm(tensors) -> float:
    return float(sum(t.double().pow(2).sum() for t in tensors))


def sharpness_measures(
    ctx: MeasureContext, *, samples: int = 8, steps: int = 10, chunk: int | None = None
) -> list[MeasureValue]:
    """The PAC-Bayes and sharpness measures of Jiang et al. (2020) with their search costs in notes."""
    jiang = "Jiang et al. 2020"
    omega = ctx.num_params
    w_sq = _squared_norm(ctx.params.values())
    has_init = ctx.init_params is not None
    diff = {k: ctx.params[k] - ctx.init_params[k] for k in ctx.params} if has_init else None
    d_sq = _squared_norm(diff.values()) if has_init else math.nan
    init_note = "" if has_init else "needs the initial weights (Problem(init_state=...))"

    clock = time.perf_counter()
    sigma = pac_bayes_sigma(ctx, samples=samples, steps=steps)
    clock, sigma_seconds = time.perf_counter(), time.perf_counter() - clock
    mag = pac_bayes_sigma(ctx, magnitude_aware=True, samples=samples, steps=steps)
    clock, mag_seconds = time.perf_counter(), time.perf_counter() - clock
    alpha = worst_case_sharpness(ctx, steps=steps, chunk=chunk)
    alpha_seconds = time.perf_counter() - clock

    def cost(search: SharpnessSearch) -> str:
        bracket = f" (crossing in [{search.radius:.4g}, {search.upper:.4g}))" if math.isfinite(search.upper) else ""
        return (
            f"radius {search.radius:.3g}{bracket}, drop {search.accuracy_drop:.3f} ± {search.standard_error:.3f}, "
            f"{search.steps} bisection steps × {search.samples_per_step} samples, {search.forward_passes} forward passes"
            + (f", {search.backward_passes} backward" if search.backward_passes else "")
            + (" (capped: accuracy never dropped by 0.1)" if search.capped else "")
        )

    def safe(value_fn, radius):
        return value_fn() if radius > 0 else math.nan

    s, a, sm = sigma.radius, alpha.radius, mag.radius
    log_m = math.log(ctx.m)

    def mag_measure(vector: dict[str, torch.Tensor] | None) -> float:
        if vector is None or sm <= 0:
            return math.nan
        total_sq = _squared_norm(vector.values())
        numerator = _EPSILON**2 + (sm**2 + 1) * total_sq / omega
        terms = sum(
            float(torch.log(numerator / (_EPSILON**2 + sm**2 * v.double() ** 2)).sum()) for v in vector.values()
        )
        return 0.25 * terms + log_m - math.log(sm) + 10

    rows = [
        MeasureValue(
            "pac_bayes_sigma",
            s,
            "sharpness",
            jiang,
            "σ: largest isotropic weight noise, −0.1 train acc.",
            note=cost(sigma),
        ),
        MeasureValue(
            "pac_bayes_orig",
            safe(lambda: w_sq / (4 * s**2) + log_m - math.log(s) + 10, s),
            "sharpness",
            jiang,
            "‖w‖²/(4σ²) + log(m/σ) + 10",
        ),
        MeasureValue(
            "pac_bayes_init",
            safe(lambda: d_sq / (4 * s**2) + log_m - math.log(s) + 10, s),
            "sharpness",
            jiang,
            "‖w−w⁰‖²/(4σ²) + log(m/σ) + 10",
            note=init_note,
        ),
        MeasureValue("pac_bayes_flatness", safe(lambda: 1 / s**2, s), "sharpness", jiang, "1/σ²"),
        MeasureValue(
            "pac_bayes_mag_sigma", sm, "sharpness", jiang, "σ': largest magnitude-aware noise", note=cost(mag)
        ),
        MeasureValue("pac_bayes_mag_orig", mag_measure(ctx.params), "sharpness", jiang, "magnitude-aware PAC-Bayes, w"),
        MeasureValue(
            "pac_bayes_mag_init",
            mag_measure(diff),
            "sharpness",
            jiang,
            "magnitude-aware PAC-Bayes, w − w⁰",
            note=init_note,
        ),
        MeasureValue("pac_bayes_mag_flatness", safe(lambda: 1 / sm**2, sm), "sharpness", jiang, "1/σ'²"),
        MeasureValue(
            "worst_case_sharpness_alpha",
            a,
            "sharpness",
            "Keskar et al. 2017",
            "α: largest adversarial box radius",
            note=cost(alpha),
        ),
        MeasureValue(
            "sharpness_orig",
            safe(lambda: w_sq * math.log(2 * omega) / (4 * a**2) + log_m - math.log(a) + 10, a),
            "sharpness",
            jiang,
            "‖w‖² log(2ω)/(4α²) + log(m/α) + 10",
        ),
        MeasureValue(
            "sharpness_init",
            safe(lambda: d_sq * math.log(2 * omega) / (4 * a**2) + log_m - math.log(a) + 10, a),
            "sharpness",
            jiang,
            "‖w−w⁰‖² log(2ω)/(4α²) + log(m/α) + 10",
            note=init_note,
        ),
        MeasureValue("sharpness_flatness", safe(lambda: 1 / a**2, a), "sharpness", jiang, "1/α²"),
    ]
    # each search's wall time and passes go to the rows computed from it (σ: 4 rows, σ': 4, α: 4)
    searches = [(sigma, sigma_seconds)] * 4 + [(mag, mag_seconds)] * 4 + [(alpha, alpha_seconds)] * 4
    return [
        dataclasses.replace(
            row, seconds=seconds, forward_passes=search.forward_passes, backward_passes=search.backward_passes
        )
        for row, (search, seconds) in zip(rows, searches, strict=True)
    ]
