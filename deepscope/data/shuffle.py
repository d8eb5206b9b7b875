"""Dinucleotide-preserving shuffles of one-hot sequences (Altschul & Erickson, 1985), the usual DeepLIFT-SHAP references.

A shuffle keeps the first and last letter and the count of every pair of adjacent letters
(dinucleotide), and is drawn uniformly among all sequences that do. Altschul & Erickson's
construction: the sequence is an Eulerian walk through the graph whose vertices are the letters
and whose edges are its adjacent pairs. For every letter except the last, one outgoing edge is
chosen to be used last (with probability proportional to its multiplicity), re-drawn until those
"last edges" form a tree leading to the final letter; the other outgoing edges of each letter are
put in a uniformly random order; walking the edges in that order from the first letter gives the
shuffle. Each distinct sequence has the same probability (Kandel et al., 1996, Lemma 1).

``N`` positions (all-zero columns) stay where they are: each maximal run of known letters is
shuffled on its own (keeping its first and last letter, so the pairs across an ``N`` are kept
too), which preserves every dinucleotide count, and a DeepLIFT reference then differs from its
sequence only where the sequence is known.

Example:
    >>> import torch
    >>> x = torch.nn.functional.one_hot(torch.tensor([[0, 1, 2, 3, 0, 1, 2, 0]]), 4).permute(0, 2, 1).float()
    >>> dinucleotide_shuffle(x, n_shuffles=3, seed=0).shape
    torch.Size([1, 3, 4, 8])
"""

from __future__ import annotations

import numpy as np
import torch

from deepscope._validation import check_int, check_seed
from deepscope.errors import DataError, invalid_parameter

__all__ = ["dinucleotide_shuffle", "one_hot_codes"]


def one_hot_codes(sequences: torch.Tensor, owner: str) -> np.ndarray:
    """The letter index of every column ``(batch, length)``, -1 for an ``N`` (all-zero) column.

    Raises:
        DataError: not ``(batch, alphabet, length)`` with each column one-hot or all zero.
    """
    if not isinstance(sequences, torch.Tensor) or sequences.dim() != 3 or 0 in sequences.shape:
        raise invalid_parameter("sequences", owner, "a one-hot tensor of shape (batch, alphabet, length)", sequences)
    values = sequences.detach().cpu()
    binary = bool(((values == 0) | (values == 1)).all())
    column_sums = values.sum(1)
    if not binary or not bool(((column_sums == 0) | (column_sums == 1)).all()):
        raise DataError(
            f"The 'sequences' of {owner} must be one-hot of shape (batch, alphabet, length): each column has "
            f"one 1 and the rest 0, or all 0 for an N. Got a tensor of shape {tuple(sequences.shape)} that is not."
        )
    codes = values.argmax(1).numpy().astype(np.int64)
    codes[column_sums.numpy() == 0] = -1
    return codes


def _runs(codes: np.ndarray) -> list[tuple[int, int, int]]:
    """(sequence, start, stop) of every maximal run of known letters longer than 2 (shorter ones cannot move)."""
    runs = []
    for row, line in enumerate(codes):
        known = np.concatenate([[False], line >= 0, [False]])
        edges = np.flatnonzero(known[1:] != known[:-1])
        runs.extend((row, int(a), int(b)) for a, b in zip(edges[::2], edges[1::2]) if b - a > 2)
    return runs


def _last_letters(rng: np.random.Generator, pairs: np.ndarray, roots: np.ndarray) -> np.ndarray:
    """Per row and letter, the letter its last outgoing edge goes to, the edges forming a tree to the root.

    ``pairs``: ``(rows, alphabet, alphabet)`` dinucleotide counts. Each letter's last edge is drawn
    uniformly among its edges (a successor letter with probability proportional to its count), and
    the rows whose choice has a cycle are drawn again (Altschul & Erickson's rejection step).
    Letters without outgoing edges and the root get -1.
    """
    rows, alphabet, _ = pairs.shape
    chosen = np.full((rows, alphabet), -1, dtype=np.int64)
    outgoing = pairs.sum(2)
    bounds = np.cumsum(pairs, axis=2)
    pending = np.arange(rows)
    while pending.size:
        u = rng.random((pending.size, alphabet)) * outgoing[pending]
        draw = (u[..., None] >= bounds[pending]).sum(2)
        draw[outgoing[pending] == 0] = -1
        draw[np.arange(pending.size), roots[pending]] = -1
        chosen[pending] = draw
        pending = pending[~_is_tree(draw, outgoing[pending] == 0, roots[pending])]
    return chosen


def _is_tree(last: np.ndarray, empty: np.ndarray, roots: np.ndarray) -> np.ndarray:
    """Whether following each letter's last edge reaches the root (no cycle), row by row."""
    rows, alphabet = last.shape
    index = np.arange(rows)[:, None]
    current = np.broadcast_to(np.arange(alphabet), last.shape).copy()
    for _ in range(alphabet):
        step = last[index, current]
        current = np.where(step >= 0, step, current)
    return ((current == roots[:, None]) | empty).all(axis=1)


def _walk(rng: np.random.Generator, pairs: np.ndarray, last: np.ndarray, firsts: np.ndarray, length: int) -> np.ndarray:
    """The Eulerian walks: from the first letter, each visit to a letter takes one of its unused edges
    uniformly at random (a uniform order of its edges), the chosen last edge once the others are used."""
    remaining = pairs.copy()
    rows = np.arange(pairs.shape[0])
    holding = last >= 0
    remaining[rows[:, None], np.arange(pairs.shape[1]), np.maximum(last, 0)] -= holding  # kept for the end
    alphabet = pairs.shape[1]
    flat = remaining.reshape(-1, alphabet)  # row r, letter a at r·alphabet + a
    last_flat, base = last.reshape(-1), rows * alphabet
    draws = rng.random((max(length - 1, 0), rows.size))
    walk = np.empty((pairs.shape[0], length), dtype=np.int64)
    current = firsts.copy()
    walk[:, 0] = current
    for step in range(1, length):
        index = base + current
        bounds = np.cumsum(flat[index], axis=1)  # (rows, alphabet)
        total = bounds[:, -1]
        following = (draws[step - 1, :, None] * total[:, None] >= bounds).sum(1)
        open_rows = total > 0
        following = np.where(open_rows, following, np.maximum(last_flat[index], 0))  # the last edge; finished runs
        flat[index, np.minimum(following, alphabet - 1)] -= open_rows
        current = following
        walk[:, step] = current
    return walk


def dinucleotide_shuffle(sequences: torch.Tensor, n_shuffles: int = 20, seed: int = 0) -> torch.Tensor:
    """``n_shuffles`` uniform dinucleotide shuffles of each one-hot sequence, ``N`` columns kept in place.

    Args:
        sequences: ``(batch, alphabet, length)``, each column one-hot or all zero (``N``).
        n_shuffles: shuffles per sequence.
        seed: fixes every shuffle (``numpy.random.default_rng(seed)``).

    Returns:
        ``(batch, n_shuffles, alphabet, length)`` in the dtype and device of ``sequences``.
    """
    owner = "dinucleotide_shuffle"
    n_shuffles = check_int(n_shuffles, "n_shuffles", owner, minimum=1)
    seed = check_seed(seed, owner)
    codes = one_hot_codes(sequences, owner)
    batch, alphabet, length = sequences.shape
    shuffled = np.repeat(codes[:, None, :], n_shuffles, axis=1)  # (batch, n, length)
    runs = _runs(codes)
    if runs:
        rng = np.random.default_rng(seed)
        pairs, firsts, roots = [], [], []
        for row, start, stop in runs:
            letters = codes[row, start:stop]
            pairs.append(np.bincount(letters[:-1] * alphabet + letters[1:], minlength=alphabet * alphabet))
            firsts.append(letters[0])
            roots.append(letters[-1])
        # one row per (run, shuffle)
        pair_counts = np.repeat(np.stack(pairs).reshape(-1, alphabet, alphabet), n_shuffles, axis=0)
        root = np.repeat(np.array(roots), n_shuffles)
        last = _last_letters(rng, pair_counts, root)
        walks = _walk(rng, pair_counts, last, np.repeat(np.array(firsts), n_shuffles), max(b - a for _, a, b in runs))
        for index, (row, start, stop) in enumerate(runs):
            shuffled[row, :, start:stop] = walks[index * n_shuffles : (index + 1) * n_shuffles, : stop - start]
    result = torch.zeros(batch, n_shuffles, alphabet, length, dtype=sequences.dtype, device=sequences.device)
    known = torch.from_numpy(shuffled >= 0).to(sequences.device)
    letters = torch.from_numpy(np.maximum(shuffled, 0)).to(sequences.device)
    result.scatter_(2, letters.unsqueeze(2), known.unsqueeze(2).to(sequences.dtype))
    return result
