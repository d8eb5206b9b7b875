"""Generalization: complexity measures, certified bounds, diagnostics and ranking of measures."""

from deepscope.generalization.bounds import TestSetBound, binary_kl, kl_inverse_lower, kl_inverse_upper, test_set_bound

__all__ = ["binary_kl", "kl_inverse_upper", "kl_inverse_lower", "TestSetBound", "test_set_bound"]
