"""Per-layer empirical spectral density (ESD) metrics, WeightWatcher-style, with a fit-quality flag.

For each Linear/Conv weight ``W`` (N × M, N ≥ M; a Conv's kernel is cut into its ``k`` spatial
slices ``W[:, :, i, j]`` whose eigenvalues are pooled, as WeightWatcher 0.7 does), the eigenvalues
``λ`` of ``WᵀW`` are fitted with a power-law tail ``p(λ) ∝ λ^{−α}`` for ``λ ≥ λ_min`` (Martin &
Mahoney 2021). α is the maximum-likelihood estimate ``α = 1 + n / Σ log(λ_i/λ_min)`` (Clauset,
Shalizi & Newman 2009) and ``λ_min`` minimises the Kolmogorov–Smirnov distance D between the
tail and the fitted law. Metrics: α, α-weighted ``α · log10 λ_max``, ``log10 ‖W‖_F²``,
``log10 λ_max`` (spectral), stable rank ``‖W‖_F² / λ_max`` and ``log10 Σ λ^α`` (α-norm).

Small layers give spurious α (few eigenvalues). The ``fit_quality`` flag says so — "ok",
"too_few_eigenvalues" (< ``min_eigenvalues`` in all, or < 5 in the tail), "alpha_out_of_range"
(α outside [1.5, 8]) or "poor_fit" (D > 0.25) — and α-based metrics are NaN unless it is "ok".
``alpha_fitted`` keeps the raw estimate for inspection.

Example:
    >>> import torch
    >>> result = spectral_metrics(torch.nn.Sequential(torch.nn.Linear(64, 32)))
    >>> result.layers[0].fit_quality in {"ok", "too_few_eigenvalues", "alpha_out_of_range", "poor_fit"}
    True
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
from torch import nn

from deepscope._validation import check_int
from deepscope.errors import UnsupportedModelError
from deepscope.registry import analysis
from deepscope.results import Result

__all__ = ["LayerSpectrum", "SpectralMetrics", "spectral_metrics", "fit_power_law"]


def fit_power_law(eigenvalues: np.ndarray, *, chunk: int = 256) -> tuple[float, float, float, int]:
    """Power-law tail fit: ``(alpha, xmin, ks_distance, tail_size)`` minimising KS over xmin.

    Args:
        eigenvalues: positive values, any order (``(n,)``).
        chunk: candidate xmins evaluated at once (bounds memory to ``chunk × n``).
    """
    data = np.sort(np.asarray(eigenvalues, dtype=np.float64))
    data = data[data > 0]
    n_total = len(data)
    if n_total < 2:
        return math.nan, math.nan, math.nan, n_total
    log_data = np.log(data)
    suffix = np.cumsum(log_data[::-1])[::-1]  # Σ_{j >= i} log λ_j
    best = (math.inf, math.nan, math.nan, 0)
    for start in range(0, n_total - 1, chunk):
        index = np.arange(start, min(n_total - 1, start + chunk))
        n = (n_total - index).astype(np.float64)
        denominator = suffix[index] - n * log_data[index]
        with np.errstate(divide="ignore", invalid="ignore"):
            alpha = 1.0 + n / denominator
        # KS distance of each candidate tail: rows = candidates, columns = positions in the tail
        offset = np.arange(n_total)[None, :] - index[:, None]
        valid = offset >= 0
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            ratio = data[None, :] / data[index][:, None]
            theoretical = 1.0 - ratio ** (1.0 - alpha[:, None])
            empirical = offset / n[:, None]
            distance = np.where(valid, np.abs(theoretical - empirical), 0.0).max(axis=1)
        distance = np.where(np.isfinite(alpha) & (alpha > 1), distance, np.inf)
        i = int(np.argmin(distance))
        if distance[i] < best[0]:
            best = (float(distance[i]), float(alpha[i]), float(data[index[i]]), int(n[i]))
    return best[1], best[2], best[0], best[3]


@dataclasses.dataclass(frozen=True)
class LayerSpectrum:
    """ESD metrics of one layer (α-based values NaN unless ``fit_quality == "ok"``)."""

    name: str
    shape: tuple[int, ...]
    num_eigenvalues: int
    alpha: float
    alpha_fitted: float
    alpha_weighted: float
    log_alpha_norm: float
    log_norm: float
    log_spectral_norm: float
    stable_rank: float
    xmin: float
    ks_distance: float
    tail_size: int
    fit_quality: str


@dataclasses.dataclass(frozen=True)
class SpectralMetrics(Result):
    """Per-layer ESD metrics and their averages over layers with a valid fit."""

    layers: list[LayerSpectrum]
    mean_alpha: float
    mean_alpha_weighted: float
    valid_layers: int
    unsupported_layers: list[str]

    def rows(self) -> list[dict]:
        return [dataclasses.asdict(layer) for layer in self.layers]

    def plot(self, ax=None):
        from deepscope.report.svg import new_figure

        figure, ax = new_figure(5.0, 3.0) if ax is None else (ax.figure, ax)
        names = [layer.name for layer in self.layers]
        values = [layer.alpha_fitted for layer in self.layers]
        colors = ["tab:blue" if layer.fit_quality == "ok" else "tab:gray" for layer in self.layers]
        ax.bar(range(len(names)), values, color=colors)
        ax.set_xticks(range(len(names)), names, rotation=45, fontsize=7)
        ax.set_ylabel("power-law α (grey: unreliable fit)")
        return figure


def _eigenvalues(module: nn.Module) -> np.ndarray:
    """Eigenvalues of WᵀW (float64), pooled over a conv kernel's spatial slices, sorted ascending.

    Each matrix is oriented N × M with N ≥ M and the M × M Gram matrices of all slices go through
    one batched ``eigvalsh`` (faster than an SVD of W; same eigenvalues to rounding).
    """
    weight = module.weight.detach().to(torch.float64).cpu()
    mats = weight[None] if weight.ndim == 2 else weight.reshape(weight.shape[0], weight.shape[1], -1).permute(2, 0, 1)
    if mats.shape[1] < mats.shape[2]:
        mats = mats.transpose(1, 2)
    gram = mats.transpose(1, 2) @ mats
    values = torch.linalg.eigvalsh(gram).reshape(-1).clamp(min=0.0)
    return np.sort(values.numpy())


def _layer_spectrum(name: str, module: nn.Module, min_eigenvalues: int) -> LayerSpectrum:
    eigenvalues = _eigenvalues(module)
    frobenius_sq = float(eigenvalues.sum())
    lambda_max = float(eigenvalues.max())
    alpha, xmin, distance, tail = fit_power_law(eigenvalues)
    if len(eigenvalues) < min_eigenvalues or tail < 5:
        quality = "too_few_eigenvalues"
    elif not (1.5 <= alpha <= 8.0):
        quality = "alpha_out_of_range"
    elif distance > 0.25:
        quality = "poor_fit"
    else:
        quality = "ok"
    ok = quality == "ok"
    return LayerSpectrum(
        name=name,
        shape=tuple(module.weight.shape),
        num_eigenvalues=len(eigenvalues),
        alpha=alpha if ok else math.nan,
        alpha_fitted=alpha,
        alpha_weighted=alpha * math.log10(lambda_max) if ok else math.nan,
        log_alpha_norm=math.log10(float((eigenvalues**alpha).sum())) if ok else math.nan,
        log_norm=math.log10(frobenius_sq),
        log_spectral_norm=math.log10(lambda_max),
        stable_rank=frobenius_sq / lambda_max,
        xmin=xmin,
        ks_distance=distance,
        tail_size=tail,
        fit_quality=quality,
    )


@analysis(takes="model", family="generalization", fixture="cnn", example_kwargs={"min_eigenvalues": 4})
def spectral_metrics(model: nn.Module, *, min_eigenvalues: int = 50) -> SpectralMetrics:
    """WeightWatcher-style per-layer spectral metrics with a fit-quality flag (Martin & Mahoney 2021).

    Args:
        model: any ``nn.Module``; its Linear and Conv1d/2d/3d weights are analysed (raw, not
            BatchNorm-folded, to match WeightWatcher).
        min_eigenvalues: layers with fewer eigenvalues are flagged "too_few_eigenvalues".

    Returns:
        :class:`SpectralMetrics` (one :class:`LayerSpectrum` per layer). Other modules with
        parameters are listed in ``unsupported_layers``.
    """
    min_eigenvalues = check_int(min_eigenvalues, "min_eigenvalues", "spectral_metrics", minimum=1)
    layers, unsupported = [], []
    for name, module in model.named_modules():
        if list(module.children()):
            continue
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            layers.append(_layer_spectrum(name, module, min_eigenvalues))
        elif any(True for _ in module.parameters(recurse=False)):
            unsupported.append(f"{name} ({type(module).__name__})")
    if not layers:
        raise UnsupportedModelError("spectral_metrics needs at least one Linear or Conv layer; the model has none.")
    valid = [layer for layer in layers if layer.fit_quality == "ok"]
    return SpectralMetrics(
        layers=layers,
        mean_alpha=float(np.mean([layer.alpha for layer in valid])) if valid else math.nan,
        mean_alpha_weighted=float(np.mean([layer.alpha_weighted for layer in valid])) if valid else math.nan,
        valid_layers=len(valid),
        unsupported_layers=unsupported,
    )
