"""Overfitting diagnostics: gap with its interval, learning curves, memorisation, label noise, regularisation."""

from deepscope.generalization.diagnostics.label_noise import LabelNoiseSensitivity, label_noise_sensitivity
from deepscope.generalization.diagnostics.learning_curves import LearningCurve, gap_estimate, learning_curve
from deepscope.generalization.diagnostics.memorisation import MemorisationProbe, memorisation_probe
from deepscope.generalization.diagnostics.regularisation import RegularisationComparison, regularisation_comparison

__all__ = [
    "LabelNoiseSensitivity",
    "LearningCurve",
    "MemorisationProbe",
    "RegularisationComparison",
    "gap_estimate",
    "label_noise_sensitivity",
    "learning_curve",
    "memorisation_probe",
    "regularisation_comparison",
]
