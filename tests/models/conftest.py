"""Shared data for the models tests: the digits dataset, loaded once per session."""

import pytest


@pytest.fixture(scope="session")
def digits():
    """``deepscope.datasets.load("digits")`` (8x8 images in [0, 1], 75/25 split)."""
    from deepscope.datasets import load

    return load("digits", seed=0)
