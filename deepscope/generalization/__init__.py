"""Generalization: complexity measures, certified bounds, overfitting diagnostics and ranking of measures.

Example:
    >>> from deepscope.generalization import kl_inverse_upper, test_set_bound
    >>> test_set_bound(errors=3, n=500, delta=0.05).bound < 0.02
    True
"""

from deepscope.generalization import bounds, diagnostics, ranking
from deepscope.generalization.bounds import (
    ClassicBounds,
    GaussianPosterior,
    PacBayesCertificate,
    TestSetBound,
    binary_kl,
    classic_bounds,
    kl_inverse_lower,
    kl_inverse_upper,
    pac_bayes_certificate,
    test_set_bound,
)
from deepscope.generalization.diagnostics import (
    gap_estimate,
    label_noise_sensitivity,
    learning_curve,
    memorisation_probe,
    regularisation_comparison,
)
from deepscope.generalization.measures import MeasuresResult, SpectralMetrics, measures, spectral_metrics
from deepscope.generalization.ranking import conditional_mutual_information, granulated_tau, kendall_tau, rank_measures

__all__ = [
    "bounds",
    "diagnostics",
    "ranking",
    "ClassicBounds",
    "GaussianPosterior",
    "MeasuresResult",
    "PacBayesCertificate",
    "SpectralMetrics",
    "TestSetBound",
    "binary_kl",
    "classic_bounds",
    "conditional_mutual_information",
    "gap_estimate",
    "granulated_tau",
    "kendall_tau",
    "kl_inverse_lower",
    "kl_inverse_upper",
    "label_noise_sensitivity",
    "learning_curve",
    "measures",
    "memorisation_probe",
    "pac_bayes_certificate",
    "rank_measures",
    "regularisation_comparison",
    "spectral_metrics",
    "test_set_bound",
]
