"""Memory bounds of the curvature operators: rows per chunk of a product, vectors per block.

Rows. A Hessian-vector product by double backward keeps the gradient graph of its batch: every
tensor autograd saves in the forward pass and, with ``create_graph=True``, in the backward pass. On
a BERT-small encoder (hidden 512, 4 layers, 128 tokens) that is about 100 MB per sequence, so the
products over 64 sequences held 7.1 GB at once. :func:`graph_bytes` counts the saved tensors of the
graph on one and on two rows (each storage once, the parameters themselves not: they exist
anyway); the difference is the cost of one more row and the rest a fixed part, and
:func:`rows_per_chunk` sizes a chunk so that one graph stays under :data:`GRAPH_BYTES`. The saved
tensors are not all a product holds: its double backward creates a gradient for each of them while
it runs. On the BERT-small encoder the resident memory grew by 85-92 MB per sequence (8 and 64
sequences) where 38.8 MB were saved, so a row counts :data:`PEAK_FACTOR` times its saved bytes. For a
mean loss ``L = Σ_c (n_c / N) L_c`` over chunks ``c`` of ``n_c`` rows, ``H v = Σ_c (n_c / N) H_c v``,
so the chunked product equals the whole batch's up to the order of the float sums.

Vectors. Blocks of probe or basis vectors of ``P`` parameters hold ``P × itemsize`` bytes per
vector; :func:`vectors_per_block` bounds a block to :data:`BLOCK_BYTES` (at least one vector).

Example:
    >>> rows_per_chunk(per_row=100 * 2**20, fixed=0, budget=2**30)
    10
    >>> vectors_per_block(29_000_000, itemsize=4, budget=256 * 2**20)
    2
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = [
    "GRAPH_BYTES",
    "BLOCK_BYTES",
    "PEAK_FACTOR",
    "graph_bytes",
    "measured_rows",
    "rows_per_chunk",
    "vectors_per_block",
]

GRAPH_BYTES = 2**30  # the saved tensors of one chunk's gradient graph stay under this
BLOCK_BYTES = 256 * 2**20  # one block of probe vectors (and its products) stays under this
PEAK_FACTOR = 2.5  # resident bytes per row of a product / saved bytes per row (2.4 measured on BERT-small)


def graph_bytes(build: Callable[[], Any], exclude: list[torch.Tensor]) -> int:
    """Bytes of the tensors autograd saves while ``build()`` runs, each storage once, ``exclude``'s not."""
    known = {t.untyped_storage().data_ptr() for t in exclude}
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        if tensor.layout == torch.strided and tensor.device.type != "meta":
            storage = tensor.untyped_storage()
            if storage.data_ptr() not in known:
                storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        result = build()
    del result
    return sum(storages.values())


def measured_rows(
    loss: Callable[[int], torch.Tensor],
    leaves: list[torch.Tensor],
    exclude: list[torch.Tensor],
    *,
    cap: int,
    budget: float | None = None,
    peak_factor: float = PEAK_FACTOR,
) -> int:
    """Rows per chunk whose gradient graph (``create_graph=True``) of ``loss(rows)`` stays under ``budget``.

    ``loss(rows)`` is the mean loss on the first ``rows`` rows; its graph is built on one and on two
    rows (their saved tensors counted by :func:`graph_bytes`, ``exclude`` not), the difference is
    the cost of a row (times ``peak_factor``) and the rest a fixed part. ``budget`` defaults to
    :data:`GRAPH_BYTES`.
    """

    def graph(rows: int) -> object:
        with torch.enable_grad():
            value = loss(rows)
            if not value.requires_grad:  # nothing to differentiate: the caller's product refuses it
                return None
            return torch.autograd.grad(value, leaves, create_graph=True, allow_unused=True)

    one = graph_bytes(lambda: graph(1), exclude)
    two = graph_bytes(lambda: graph(2), exclude)
    per_row = max(two - one, 1)
    budget = GRAPH_BYTES if budget is None else budget
    return rows_per_chunk(per_row=peak_factor * per_row, fixed=one - per_row, budget=budget, cap=cap)


def rows_per_chunk(*, per_row: float, fixed: float, budget: float | None = None, cap: int | None = None) -> int:
    """``⌊(budget − fixed) / per_row⌋`` rows, at least 1 (and at most ``cap``); budget: :data:`GRAPH_BYTES`."""
    budget = GRAPH_BYTES if budget is None else budget
    rows = int((budget - max(fixed, 0.0)) // max(per_row, 1.0))
    rows = max(rows, 1)
    return rows if cap is None else min(rows, cap)


def vectors_per_block(n: int, *, itemsize: int = 4, budget: float | None = None) -> int:
    """Vectors of ``n`` numbers of ``itemsize`` bytes per block holding at most ``budget`` bytes (≥ 1; :data:`BLOCK_BYTES`)."""
    budget = BLOCK_BYTES if budget is None else budget
    return max(1, int(budget // max(n * itemsize, 1)))
