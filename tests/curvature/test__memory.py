import pytest
import torch
from torch import nn

from deepscope.curvature import _memory
from deepscope.curvature._memory import graph_bytes, measured_rows, rows_per_chunk, vectors_per_block


def test_graph_bytes_counts_each_saved_storage_once_and_skips_the_excluded():
    x = torch.randn(100, requires_grad=True)  # float32: 400 bytes per saved copy of x's shape
    # exp saves its result (400 bytes); sum saves only sizes
    assert graph_bytes(lambda: x.exp().sum(), exclude=[]) == 400
    # two exp results (800 bytes); the product saves both again, the same storages: not counted twice
    assert graph_bytes(lambda: (x.exp() * x.exp()).sum(), exclude=[]) == 800
    # sin saves its input, x itself: nothing new when x is excluded (it exists anyway)
    assert graph_bytes(lambda: x.sin().sum(), exclude=[]) == 400
    assert graph_bytes(lambda: x.sin().sum(), exclude=[x]) == 0


def test_rows_per_chunk_and_vectors_per_block_arithmetic():
    assert rows_per_chunk(per_row=100, fixed=50, budget=1050) == 10
    assert rows_per_chunk(per_row=100, fixed=50, budget=1049) == 9
    assert rows_per_chunk(per_row=100, fixed=5000, budget=1000) == 1  # never below one row
    assert rows_per_chunk(per_row=1, fixed=0, budget=1000, cap=7) == 7
    assert vectors_per_block(1000, itemsize=8, budget=24_000) == 3
    assert vectors_per_block(1000, itemsize=8, budget=7_999) == 1  # at least one vector


def test_rows_per_chunk_reads_the_module_budget_when_called(monkeypatch):
    monkeypatch.setattr(_memory, "GRAPH_BYTES", 1000)
    monkeypatch.setattr(_memory, "BLOCK_BYTES", 800)
    assert rows_per_chunk(per_row=100, fixed=0) == 10
    assert vectors_per_block(100, itemsize=4) == 2


@pytest.mark.parametrize("rows", [1, 2, 5, 13])
def test_measured_rows_is_the_largest_chunk_whose_graph_fits(rows):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 9), nn.Tanh(), nn.Linear(9, 3)).double()
    x, y = torch.randn(20, 6, dtype=torch.float64), torch.randint(0, 3, (20,))
    leaves = [p.detach().requires_grad_(True) for p in model.parameters()]
    names = [name for name, _ in model.named_parameters()]

    def loss(count: int) -> torch.Tensor:
        params = dict(zip(names, leaves))
        return nn.functional.cross_entropy(torch.func.functional_call(model, params, (x[:count],)), y[:count])

    def measured(count: int) -> int:  # the oracle: the graph itself, built on ``count`` rows
        return graph_bytes(lambda: torch.autograd.grad(loss(count), leaves, create_graph=True), leaves)

    # every saved tensor of this network is per row or fixed, so the graph is affine in the rows and
    # the two-point fit predicts the exact bytes of any chunk
    exact, fixed = measured(rows), 2 * measured(1) - measured(2)
    assert measured_rows(loss, leaves, leaves, cap=20, budget=exact, peak_factor=1.0) == rows
    if rows > 1:
        assert measured_rows(loss, leaves, leaves, cap=20, budget=exact - 1, peak_factor=1.0) == rows - 1
    assert measured_rows(loss, leaves, leaves, cap=3, budget=10 * exact, peak_factor=1.0) <= 3
    # by default a row counts PEAK_FACTOR times its saved bytes (its double backward's gradients)
    per_row = measured(2) - measured(1)
    budget = fixed + _memory.PEAK_FACTOR * per_row * rows
    assert measured_rows(loss, leaves, leaves, cap=20, budget=budget) == rows
