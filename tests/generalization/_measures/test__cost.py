"""Oracles: the chunk size and the predicted pass counts by hand."""

from deepscope.generalization._measures._cost import (
    CACHE_BUDGET,
    MEMORY_BUDGET,
    balanced_bounds,
    chunk_size,
    predicted_passes,
    search_chunk,
)


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


def test_balanced_bounds_cover_the_examples_in_equal_chunks():
    assert balanced_bounds(10, 4) == [(0, 3), (3, 6), (6, 10)]  # ⌈10/4⌉ = 3 chunks of 3-4, not 4 + 4 + 2
    assert balanced_bounds(1347, 286) == [(0, 269), (269, 538), (538, 808), (808, 1077), (1077, 1347)]
    assert balanced_bounds(5, 100) == [(0, 5)] and balanced_bounds(0, 5) == []
    for n, size in [(1, 1), (7, 3), (100, 7), (1000, 1000)]:
        bounds = balanced_bounds(n, size)
        assert bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))  # contiguous
        lengths = [end - start for start, end in bounds]
        assert max(lengths) <= size and max(lengths) - min(lengths) <= 1


def test_the_cache_budget_sizes_the_searches_chunks_on_the_cpu_only():
    # 58,624 activation bytes per example (the digits CNN): 16 MiB hold 286 examples
    assert CACHE_BUDGET == 16 * 2**20
    assert search_chunk(58_624, "cpu") == search_chunk(58_624, "cpu", backward=True) == 286
    # an accelerator keeps the memory budget: 256 MiB / 58,624 B = 4578 -> cap 1024; backward 3x bytes -> 1526
    assert search_chunk(58_624, "cuda") == 1024 and search_chunk(58_624, "cuda", backward=True) == 1526
    assert search_chunk(10, "cpu") == 1024 and search_chunk(10, "cpu", backward=True) == 2048  # the caps
    assert search_chunk(10**9, "cpu") == 1  # at least one example
