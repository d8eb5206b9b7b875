"""What the measures cost: chunk sizes under a memory budget, and predicted time per family.

Memory. Per-example work (per-example gradients, forward-mode derivatives, the ascent steps of
the worst-case sharpness search) is done in chunks of examples sized so that one chunk holds
about :data:`MEMORY_BUDGET` bytes: ``chunk = ⌊budget / bytes_per_example⌋`` (at least 1). A
per-example gradient of a network with ``P`` parameters holds ``4P`` bytes per example (float32),
so on an 11M-parameter ResNet-18 a chunk has 5 examples, never the whole batch (256 examples
would hold 11 GB).

Cache. The sharpness searches' forward passes (a no-grad pass per noise draw, and the ascent's
forward and backward passes) are also kept to about :data:`CACHE_BUDGET` bytes of activations per
chunk (the layer outputs of a chunk stay in a server CPU's last-level cache), and the examples are
split into equal chunks (no small remainder chunk, which may take another kernel). On the typical
digits CNN (58,624 activation bytes per example, 1,347 examples, 1 thread, 32 MB L3) one no-grad
pass took 62 ms as one chunk, 55 ms in chunks of 1024 + 323 and 48 ms in 5 chunks of ~270; the
outputs were bitwise the same. Each example's output does not depend on the chunking (every
layer acts per example in eval mode) except through the float summation order a kernel picks.
On an accelerator, where a large batch is what keeps the device busy, the searches keep the
memory-budget chunks (:func:`search_chunk`).

Time. Every data-dependent family costs a number of passes over the measures' training subset,
and one clean forward pass over it is timed first (the margins need it anyway), so a family's
time is predicted before it runs as ``passes × t_clean`` with (the searches' largest count)

* sharpness: σ and σ' at most ``(doublings + 1 + steps) × samples`` passes each, α at most
  ``(doublings + 1 + steps) × (3 · ascent_steps + 1)`` (a forward-and-backward pass counted as
  3 forward passes);
* gradient: 3 passes for the Fisher-Rao forward-mode derivative, plus ``n_noise`` times one
  example's timed forward and backward pass for the per-example gradients of the gradient noise
  (a batch of one runs far less efficiently than a batch: its own timing, not passes).

A family predicted to take longer than its budget is declined: its rows are NaN with a one-line
note that gives the prediction and the option that lifts the limit (no value is guessed).

Example:
    >>> chunk_size(4 * 11_000_000)  # per-example gradients of an 11M-parameter network
    6
"""

from __future__ import annotations

import math

__all__ = [
    "MEMORY_BUDGET",
    "CACHE_BUDGET",
    "chunk_size",
    "balanced_bounds",
    "search_chunk",
    "predicted_passes",
    "BACKWARD_COST",
]

MEMORY_BUDGET = 256 * 2**20  # bytes one chunk of per-example work may hold
CACHE_BUDGET = 16 * 2**20  # bytes of activations one chunk of the searches' forward passes holds
BACKWARD_COST = 3.0  # one forward + backward pass, in forward passes (the usual 1 + 2)
_DOUBLINGS = 12  # the sharpness searches' bracket search: at most 12 doublings or halvings


def chunk_size(bytes_per_example: int, *, budget: int | None = None, cap: int = 1024) -> int:
    """Examples per chunk: ``⌊budget / bytes_per_example⌋`` clipped to ``[1, cap]`` (budget: :data:`MEMORY_BUDGET`)."""
    budget = MEMORY_BUDGET if budget is None else budget
    return max(1, min(cap, budget // max(int(bytes_per_example), 1)))


def search_chunk(activation_bytes: int, device_type: str, *, backward: bool = False) -> int:
    """Examples per chunk of the sharpness searches' passes (no-grad, or forward-and-backward).

    On the CPU: as many as keep the activations within :data:`CACHE_BUDGET`; elsewhere: the
    memory budget's chunk (a backward pass holds about 3 × the activations). At most 1024
    examples (2048 with ``backward``).

    Example:
        >>> search_chunk(58_624, "cpu"), search_chunk(58_624, "cuda")
        (286, 1024)
    """
    cap = 2048 if backward else 1024
    if device_type == "cpu":
        return chunk_size(activation_bytes, budget=CACHE_BUDGET, cap=cap)
    return chunk_size((3 if backward else 1) * activation_bytes, cap=cap)


def balanced_bounds(n: int, size: int) -> list[tuple[int, int]]:
    """``[start, end)`` of ``⌈n / size⌉`` chunks of ``n`` examples, sizes differing by at most one.

    Example:
        >>> balanced_bounds(10, 4)
        [(0, 3), (3, 6), (6, 10)]
    """
    if n <= 0:
        return []
    count = math.ceil(n / max(size, 1))
    edges = [(i * n) // count for i in range(count + 1)]
    return list(zip(edges[:-1], edges[1:], strict=True))


def predicted_passes(family: str, *, samples: int, steps: int, ascent_steps: int) -> float:
    """Batched passes over the subset that ``family`` takes at most (see the module docstring)."""
    evaluations = _DOUBLINGS + 1 + steps
    if family == "sharpness":
        return evaluations * (2 * samples + BACKWARD_COST * ascent_steps + 1)
    if family == "gradient":
        return BACKWARD_COST  # the forward-mode derivative; the per-example gradients are timed apart
    return 0.0
