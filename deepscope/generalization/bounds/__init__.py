"""Certified generalization bounds: kl inversion, the test-set bound, PAC-Bayes certificates, classic bounds."""

from deepscope.generalization.bounds._stochastic import GaussianPosterior, StochasticError
from deepscope.generalization.bounds.classic import ClassicBound, ClassicBounds, classic_bounds
from deepscope.generalization.bounds.kl import binary_kl, kl_inverse_lower, kl_inverse_upper
from deepscope.generalization.bounds.pac_bayes import PacBayesCertificate, gaussian_kl, pac_bayes_certificate
from deepscope.generalization.bounds.test_set import TestSetBound, test_set_bound

__all__ = [
    "ClassicBound",
    "ClassicBounds",
    "GaussianPosterior",
    "PacBayesCertificate",
    "StochasticError",
    "TestSetBound",
    "binary_kl",
    "classic_bounds",
    "gaussian_kl",
    "kl_inverse_lower",
    "kl_inverse_upper",
    "pac_bayes_certificate",
    "test_set_bound",
]
