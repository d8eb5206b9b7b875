"""Attribution metrics (``deepscope.attribution.metrics``): are the maps faithful, robust, sane, local?"""

from deepscope.attribution.metrics.complexity import Complexity, attribution_entropy, complexity, sparseness
from deepscope.attribution.metrics.faithfulness import (
    FaithfulnessCorrelation,
    Infidelity,
    PerturbationCurve,
    deletion_curve,
    faithfulness_correlation,
    infidelity,
    insertion_curve,
)
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
from deepscope.attribution.metrics.robustness import MaxSensitivity, max_sensitivity

__all__ = [
    "PerturbationCurve",
    "FaithfulnessCorrelation",
    "Infidelity",
    "Localisation",
    "Complexity",
    "MaxSensitivity",
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
