"""Generalization: complexity measures, certified bounds, overfitting diagnostics and ranking of measures.

``deepscope.generalization.measures`` is the function that computes the table of measures
(:func:`~deepscope.generalization._measures.table.measures`); its implementation lives in the
private subpackage ``deepscope.generalization._measures`` (one file per family of measures).
Import public names from here: ``from deepscope.generalization import measures, MeasuresResult,
spectral_metrics, fit_power_law``.

Deprecated (kept for one release, removed in 0.2): the old module paths
``deepscope.generalization.measures.<module>`` (``spectral``, ``table``, ``norms``, ...) and
``from deepscope.generalization.measures import MeasuresResult`` still resolve, to the very same
module objects as ``deepscope.generalization._measures.<module>``.

Example:
    >>> from deepscope.generalization import kl_inverse_upper, test_set_bound
    >>> test_set_bound(errors=3, n=500, delta=0.05).bound < 0.02
    True
"""

import sys as _sys

from deepscope.generalization import bounds, diagnostics, ranking
from deepscope.generalization._measures import (
    LayerSpectrum,
    MeasuresResult,
    MeasureValue,
    SpectralMetrics,
    fit_power_law,
    measures,
    spectral_metrics,
)
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
from deepscope.generalization.ranking import conditional_mutual_information, granulated_tau, kendall_tau, rank_measures

__all__ = [
    "bounds",
    "diagnostics",
    "ranking",
    "ClassicBounds",
    "GaussianPosterior",
    "LayerSpectrum",
    "MeasureValue",
    "MeasuresResult",
    "PacBayesCertificate",
    "SpectralMetrics",
    "TestSetBound",
    "binary_kl",
    "classic_bounds",
    "conditional_mutual_information",
    "fit_power_law",
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


def _alias_old_measures_paths() -> None:
    """Deprecated until 0.2: ``deepscope.generalization.measures.<module>`` names the ``_measures`` modules.

    The entries go into ``sys.modules`` only (the package attribute ``measures`` stays the function), so
    ``from deepscope.generalization.measures.spectral import fit_power_law`` finds the already imported
    module instead of executing the file a second time under another name.
    """
    old, new = f"{__name__}.measures", f"{__name__}._measures"
    for name, module in list(_sys.modules.items()):
        if name == new or name.startswith(new + "."):
            _sys.modules.setdefault(old + name[len(new) :], module)


_alias_old_measures_paths()
