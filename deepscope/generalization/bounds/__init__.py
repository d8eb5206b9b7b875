"""Certified generalization bounds: kl inversion, the test-set bound, PAC-Bayes certificates, classic bounds."""

from deepscope.generalization.bounds.kl import binary_kl, kl_inverse_lower, kl_inverse_upper
from deepscope.generalization.bounds.test_set import TestSetBound, test_set_bound

__all__ = ["binary_kl", "kl_inverse_upper", "kl_inverse_lower", "TestSetBound", "test_set_bound"]
