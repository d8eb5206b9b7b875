"""Oracles: the chunk size and the predicted pass counts by hand."""

from deepscope.generalization._measures._cost import MEMORY_BUDGET, chunk_size, predicted_passes


def test_chunk_size_fits_the_budget():
    assert MEMORY_BUDGET == 256 * 2**20
    assert chunk_size(4 * 11_173_962) == MEMORY_BUDGET // (4 * 11_173_962) == 6  # ResNet-18 gradients
    assert chunk_size(1) == 1024 and chunk_size(1, cap=16) == 16  # capped
    assert chunk_size(MEMORY_BUDGET * 10) == 1  # at least one example
    assert chunk_size(100, budget=1000) == 10


def test_predicted_passes_by_hand():
    # sharpness: (12 doublings + 1 + 5 steps) evaluations × (2 searches × 8 draws + α: 3·5 ascent + 1)
    assert predicted_passes("sharpness", samples=8, steps=5, ascent_steps=5) == 18 * 32
    # gradient: the jvp's forward and derivative (3); the per-example gradients are timed apart
    assert predicted_passes("gradient", samples=8, steps=5, ascent_steps=5) == 3.0
    assert predicted_passes("norm", samples=8, steps=5, ascent_steps=5) == 0.0


def test_sharpness_predictions_grow_with_the_work():
    small = predicted_passes("sharpness", samples=2, steps=3, ascent_steps=5)
    large = predicted_passes("sharpness", samples=8, steps=10, ascent_steps=5)
    assert large > small > 0
