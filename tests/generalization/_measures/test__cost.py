"""Oracles: the chunk size and the predicted pass counts by hand."""

import pytest

from deepscope.generalization._measures._cost import MEMORY_BUDGET, chunk_size, predicted_passes


def test_chunk_size_fits_the_budget():
    assert MEMORY_BUDGET == 256 * 2**20
    assert chunk_size(4 * 11_173_962) == MEMORY_BUDGET // (4 * 11_173_962) == 6  # ResNet-18 gradients
    assert chunk_size(1) == 1024 and chunk_size(1, cap=16) == 16  # capped
    assert chunk_size(MEMORY_BUDGET * 10) == 1  # at least one example
    assert chunk_size(100, budget=1000) == 10


def test_predicted_passes_by_hand():
    # sharpness: (12 doublings + 1 + 5 steps) evaluations × (2 searches × 8 draws + α: 3·5 ascent + 1)
    assert predicted_passes("sharpness", n=100, samples=8, steps=5, ascent_steps=5, noise_examples=256) == 18 * 32
    # gradient: 3 for the jvp, 4 × (noise examples / n) for the per-example gradients
    assert predicted_passes("gradient", n=512, samples=8, steps=5, ascent_steps=5, noise_examples=256) == 5.0
    assert predicted_passes("gradient", n=100, samples=8, steps=5, ascent_steps=5, noise_examples=256) == 7.0
    assert predicted_passes("norm", n=100, samples=8, steps=5, ascent_steps=5, noise_examples=256) == 0.0


@pytest.mark.parametrize("family", ["sharpness", "gradient"])
def test_predictions_grow_with_the_work(family):
    small = predicted_passes(family, n=64, samples=2, steps=3, ascent_steps=5, noise_examples=16)
    large = predicted_passes(family, n=64, samples=8, steps=10, ascent_steps=5, noise_examples=64)
    assert large > small > 0
