"""Generalization measures (Jiang et al. 2020): norms, margins, sharpness, gradients, spectra."""

from deepscope.generalization._measures._context import MeasureValue
from deepscope.generalization._measures.spectral import LayerSpectrum, SpectralMetrics, fit_power_law, spectral_metrics
from deepscope.generalization._measures.table import FAMILIES, MeasuresResult, measures

__all__ = [
    "FAMILIES",
    "LayerSpectrum",
    "MeasureValue",
    "MeasuresResult",
    "SpectralMetrics",
    "fit_power_law",
    "measures",
    "spectral_metrics",
]
