"""Norm-based complexity measures: Frobenius/spectral products and sums, distances, path norm.

With ``W_i`` the BatchNorm-folded weights of the ``d`` Linear/Conv layers, ``W_i⁰`` their values at
initialisation, and γ the 10th-percentile training margin (Jiang et al. 2020, Sec. C):

* log-product of norms ``Σ_i log ‖W_i‖²`` and log-sum ``log d + (1/d) Σ_i log ‖W_i‖²`` (the log of
  ``d · (Π ‖W_i‖²)^{1/d}``), for the Frobenius and the spectral norm, and over the margin
  (``− 2 log γ``);
* distances from initialisation ``Σ_i ‖W_i − W_i⁰‖_F²`` and ``Σ_i ‖W_i − W_i⁰‖₂²``, the parameter
  norm ``‖w‖²`` and ``‖w − w⁰‖²``;
* the spectrally-normalised margin (Bartlett et al. 2017)
  ``log[ Π ‖W_i‖₂ · (Σ_i (‖W_iᵀ − M_iᵀ‖_{2,1} / ‖W_i‖₂)^{2/3})^{3/2} / γ ]`` with ``M = 0`` (orig) or
  ``M = W⁰`` (init);
* the PAC-Bayes spectral measure (Neyshabur et al. 2018)
  ``log[ Π ‖W_i‖₂² · Σ_i ‖W_i − M_i‖_F² / ‖W_i‖₂² / γ² ]``, orig and init;
* the path norm ``Σ f_{w²}(1)``: the network with every weight squared evaluated on an all-ones
  input (Neyshabur et al. 2015), and path norm over γ².

Spectral norms of convolutions are those of the convolution operator (see ``_layers``).
"""

from __future__ import annotations

import dataclasses
import math

import torch

from deepscope.generalization._measures._context import MeasureContext, MeasureValue
from deepscope.generalization._measures._folding import folded_state
from deepscope.generalization._measures._layers import layer_spectral_norm

__all__ = ["norm_measures", "path_norm"]

_JIANG = "Jiang et al. 2020"


def _spectral_norms(ctx: MeasureContext, key: str, layers) -> list[float]:
    if key not in ctx.cache:
        ctx.cache[key] = [layer_spectral_norm(layer) for layer in layers]
    return [norm.sigma for norm in ctx.cache[key]]


def _spectral_note(ctx: MeasureContext) -> str:
    """The convolutions whose operator norm stopped at the Lanczos cap unconverged ("" when all converged).

    The weights and their distances from initialisation have the layers of ``ctx.folded``, in order.
    """
    missed = [
        f"{layer.spec.name}{' − init' if key == 'spectral_difference' else ''} (within {norm.error_bound:.1e})"
        for key in ("spectral", "spectral_difference")
        for layer, norm in zip(ctx.folded, ctx.cache.get(key, []), strict=False)
        if not norm.converged
    ]
    return "conv spectral norm not converged: " + ", ".join(missed) if missed else ""


def _difference_layers(ctx: MeasureContext):
    return [
        dataclasses.replace(now, weight=now.weight - then.weight)
        for now, then in zip(ctx.folded, ctx.folded_init or [], strict=True)
    ]


def _log(value: float) -> float:
    """log with log(0) = −inf (a layer identical to its reference contributes nothing)."""
    return math.log(value) if value > 0 else -math.inf


def _l21_transpose(matrix: torch.Tensor) -> float:
    """‖Aᵀ‖_{2,1}: the sum of the ℓ2 norms of A's rows (Bartlett et al. 2017)."""
    return float(matrix.double().norm(dim=1).sum())


def path_norm(ctx: MeasureContext) -> float:
    """``Σ f_{w²}(1)``: every (folded) weight and bias squared, all-ones input, outputs summed.

    For a linear model ``f(x) = Wx`` this is ``Σ W_ij²``; for a ReLU network it is the sum over
    input-output paths of the product of squared weights (Neyshabur et al. 2015).
    """
    params, buffers = folded_state(ctx.structure, ctx.folded, ctx.params, ctx.buffers)
    squared = {k: v.detach() ** 2 for k, v in params.items()}
    ones = torch.ones((1, *ctx.x.shape[1:]), dtype=ctx.x.dtype, device=ctx.x.device)
    with torch.no_grad():
        out = ctx.problem.select(
            torch.func.functional_call(ctx.problem.model, (squared, buffers), (ones,), strict=False)
        )
    ctx.forward_passes += 1
    return float(out.double().sum())


def _path_norm_note(ctx: MeasureContext) -> str:
    """Why the path norm is undefined for this model ("" when it is defined)."""
    if not isinstance(ctx.x, torch.Tensor) or not ctx.x.is_floating_point():
        return "needs float tensor inputs (token ids or named inputs have no all-ones input)"
    if ctx.structure.non_homogeneous:
        return "not ReLU-like: " + ", ".join(ctx.structure.non_homogeneous)
    return ""


def norm_measures(ctx: MeasureContext) -> list[MeasureValue]:
    """All norm-based measures of the context (NaN with a note where initial weights are missing)."""
    d = ctx.depth
    gamma = ctx.margin()
    log_gamma_sq = 2.0 * math.log(gamma) if gamma > 0 else math.nan
    margin_note = "" if gamma > 0 else "the 10th-percentile margin is <= 0 (many training errors)"
    fro_sq = [float(layer.weight.double().pow(2).sum()) for layer in ctx.folded]
    spec = _spectral_norms(ctx, "spectral", ctx.folded)
    spec_sq = [s**2 for s in spec]
    log_prod_fro = sum(_log(v) for v in fro_sq)
    log_prod_spec = sum(_log(v) for v in spec_sq)
    out = [
        MeasureValue("parameter_count", float(ctx.num_params), "size", _JIANG, "number of parameters ω"),
        MeasureValue("log_product_frobenius", log_prod_fro, "norm", _JIANG, "Σ log ‖W‖_F²", True),
        MeasureValue(
            "log_sum_frobenius", math.log(d) + log_prod_fro / d, "norm", _JIANG, "log(d·(Π‖W‖_F²)^(1/d))", True
        ),
        MeasureValue("log_product_spectral", log_prod_spec, "norm", _JIANG, "Σ log ‖W‖₂²", True),
        MeasureValue(
            "log_sum_spectral", math.log(d) + log_prod_spec / d, "norm", _JIANG, "log(d·(Π‖W‖₂²)^(1/d))", True
        ),
        MeasureValue(
            "log_product_frobenius_over_margin",
            log_prod_fro - log_gamma_sq,
            "norm",
            _JIANG,
            "Σ log ‖W‖_F² − 2 log γ",
            True,
            margin_note,
        ),
        MeasureValue(
            "log_product_spectral_over_margin",
            log_prod_spec - log_gamma_sq,
            "norm",
            _JIANG,
            "Σ log ‖W‖₂² − 2 log γ",
            True,
            margin_note,
        ),
        MeasureValue(
            "parameter_norm",
            float(sum(p.double().pow(2).sum() for p in ctx.params.values())),
            "norm",
            _JIANG,
            "‖w‖² over all parameters",
        ),
    ]
    out += _spectral_margin_measures(ctx, spec, log_gamma_sq, margin_note, reference="orig")
    out += _distance_measures(ctx, spec, log_gamma_sq, margin_note)
    spectral_note = _spectral_note(ctx)
    if spectral_note:  # every value built from a spectral norm says which ones are unconverged lower bounds
        out = [
            dataclasses.replace(m, note="; ".join(n for n in (m.note, spectral_note) if n))
            if "spectral" in m.name and math.isfinite(m.value)
            else m
            for m in out
        ]
    note = _path_norm_note(ctx)
    value = path_norm(ctx) if not note else math.nan
    out.append(MeasureValue("path_norm", value, "norm", "Neyshabur et al. 2015", "Σ f_{w²}(1)", False, note))
    out.append(
        MeasureValue(
            "path_norm_over_margin",
            value / gamma**2 if gamma > 0 else math.nan,
            "norm",
            _JIANG,
            "Σ f_{w²}(1) / γ²",
            False,
            note or margin_note,
        )
    )
    return out


def _spectral_margin_measures(ctx, spec, log_gamma_sq, margin_note, *, reference, differences=None):
    """Bartlett (2017) and Neyshabur (2018) measures relative to M = 0 (orig) or M = W⁰ (init)."""
    references = differences if differences is not None else [layer.matrix() for layer in ctx.folded]
    log_prod_spec = sum(_log(s) for s in spec)
    ratio = sum((_l21_transpose(r) / s) ** (2.0 / 3.0) for r, s in zip(references, spec, strict=True))
    bartlett = log_prod_spec + 1.5 * _log(ratio) - 0.5 * log_gamma_sq
    fro_ratio = sum(float(r.double().pow(2).sum()) / s**2 for r, s in zip(references, spec, strict=True))
    neyshabur = 2 * log_prod_spec + _log(fro_ratio) - log_gamma_sq
    return [
        MeasureValue(
            f"spectral_margin_{reference}",
            bartlett,
            "norm",
            "Bartlett et al. 2017",
            f"log(Π‖W‖₂ (Σ(‖Wᵀ−Mᵀ‖₂,₁/‖W‖₂)^(2/3))^(3/2) / γ), M={'0' if reference == 'orig' else 'W⁰'}",
            True,
            margin_note,
        ),
        MeasureValue(
            f"pac_bayes_spectral_{reference}",
            neyshabur,
            "norm",
            "Neyshabur et al. 2018",
            f"log(Π‖W‖₂² Σ‖W−M‖_F²/‖W‖₂² / γ²), M={'0' if reference == 'orig' else 'W⁰'}",
            True,
            margin_note,
        ),
    ]


def _distance_measures(ctx, spec, log_gamma_sq, margin_note) -> list[MeasureValue]:
    names = [
        ("frobenius_distance", "Σ ‖W − W⁰‖_F²", False),
        ("spectral_distance", "Σ ‖W − W⁰‖₂²", False),
        ("l2_distance", "‖w − w⁰‖² over all parameters", False),
        ("spectral_margin_init", "Bartlett et al. 2017 with M = W⁰", True),
        ("pac_bayes_spectral_init", "Neyshabur et al. 2018 with M = W⁰", True),
    ]
    if ctx.folded_init is None:
        note = "needs the initial weights (Problem(init_state=...))"
        return [MeasureValue(n, math.nan, "distance", _JIANG, meaning, log, note) for n, meaning, log in names]
    differences = _difference_layers(ctx)
    out = [
        MeasureValue(
            "frobenius_distance",
            sum(float(layer.weight.double().pow(2).sum()) for layer in differences),
            "distance",
            _JIANG,
            names[0][1],
        ),
        MeasureValue(
            "spectral_distance",
            sum(s**2 for s in _spectral_norms(ctx, "spectral_difference", differences)),
            "distance",
            _JIANG,
            names[1][1],
        ),
        MeasureValue(
            "l2_distance",
            float(sum((p.double() - ctx.init_params[k].double()).pow(2).sum() for k, p in ctx.params.items())),
            "distance",
            _JIANG,
            names[2][1],
        ),
    ]
    out += _spectral_margin_measures(
        ctx, spec, log_gamma_sq, margin_note, reference="init", differences=[layer.matrix() for layer in differences]
    )
    return out
