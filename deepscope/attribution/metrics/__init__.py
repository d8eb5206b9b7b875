"""Attribution metrics (``deepscope.attribution.metrics``): are the maps faithful, robust, sane, local?"""

from deepscope.attribution.metrics.faithfulness import (
    FaithfulnessCorrelation,
    Infidelity,
    PerturbationCurve,
    deletion_curve,
    faithfulness_correlation,
    infidelity,
    insertion_curve,
)

__all__ = [
    "PerturbationCurve",
    "FaithfulnessCorrelation",
    "Infidelity",
    "deletion_curve",
    "insertion_curve",
    "faithfulness_correlation",
    "infidelity",
]
