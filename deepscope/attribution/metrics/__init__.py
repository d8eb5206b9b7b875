"""Attribution metrics (``deepscope.attribution.metrics``): are the maps faithful, robust, sane, local?

Faithfulness: :func:`deletion_curve`, :func:`insertion_curve`, :func:`faithfulness_correlation`,
:func:`infidelity`, :func:`road`. Robustness: :func:`max_sensitivity`. Sanity:
:func:`model_parameter_randomisation`. Localisation against a ground-truth mask: :func:`localisation`
and its parts. Complexity: :func:`complexity`, :func:`sparseness`, :func:`attribution_entropy`.
:func:`summary_metrics` is the cheap set the report shows.
"""

from deepscope.attribution.metrics.complexity import Complexity, attribution_entropy, complexity, sparseness
from deepscope.attribution.metrics.faithfulness import (
    FaithfulnessCorrelation,
    PerturbationCurve,
    deletion_curve,
    faithfulness_correlation,
    insertion_curve,
)
from deepscope.attribution.metrics.infidelity import Infidelity, infidelity
from deepscope.attribution.metrics.localisation import (
    Localisation,
    attribution_auroc,
    localisation,
    precision_at_k,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
)
from deepscope.attribution.metrics.randomisation import (
    RandomisationCheck,
    model_parameter_randomisation,
    structural_similarity,
)
from deepscope.attribution.metrics.road import ROAD, noisy_linear_imputation, road
from deepscope.attribution.metrics.robustness import MaxSensitivity, max_sensitivity
from deepscope.attribution.metrics.summary import summary_metrics

__all__ = [
    "summary_metrics",
    "PerturbationCurve",
    "FaithfulnessCorrelation",
    "Infidelity",
    "Localisation",
    "Complexity",
    "MaxSensitivity",
    "ROAD",
    "road",
    "noisy_linear_imputation",
    "RandomisationCheck",
    "model_parameter_randomisation",
    "structural_similarity",
    "max_sensitivity",
    "deletion_curve",
    "insertion_curve",
    "faithfulness_correlation",
    "infidelity",
    "localisation",
    "attribution_auroc",
    "precision_at_k",
    "relevance_rank_accuracy",
    "relevance_mass_accuracy",
    "complexity",
    "sparseness",
    "attribution_entropy",
]
