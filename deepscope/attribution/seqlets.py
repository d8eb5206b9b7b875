"""Seqlets (spans of high attribution) and how well they recover planted motifs.

:func:`call_seqlets` is the seqlet-calling step of TF-MoDISco (Shrikumar et al. 2018,
"TF-MoDISco v0.5.6.5", arXiv:1811.00416; tfmodisco-lite), as tangermeme's
``tfmodisco_seqlets`` implements it:

1. window sums ``S[i, t] = Σ_{l=t}^{t+w−1} a[i, l]`` of the per-position attribution ``a``;
2. a null: a Laplace distribution fitted to each side of ``S`` around its mode ``μ`` (the most
   aggressive rate ``λ = max_q −log(1 − q)/(Q_q − μ)`` over the quantiles ``q = 0, 0.05, …, 0.9``),
   10,000 draws from it (seeded);
3. thresholds: an isotonic regression of "real vs null" on the window sums gives the precision of
   each value; the threshold is the smallest sum whose precision is ``≥ 1 − target_fdr`` (positive
   and negative sides separately), then clamped so that between ``min_passing_frac`` and
   ``max_passing_frac`` of the windows pass;
4. greedy extraction: per sequence, the passing window with the largest ``|S|`` becomes a seqlet
   ``[t − flank, t + w + flank)``, positions within ``⌊w/2⌋ + flank`` of it are suppressed, repeat.

:func:`motif_recovery` scores seqlets against known motif sites (the ``planted_motifs`` data):
precision = share of seqlets that overlap a site of their sequence by at least ``min_overlap``
bases, recall = share of sites overlapped by at least one seqlet.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from deepscope.errors import DataError, invalid_parameter
from deepscope.results import Result

__all__ = ["Seqlets", "MotifRecovery", "call_seqlets", "motif_recovery"]

_OWNER = "call_seqlets"
_NULL_DRAWS = 10_000
_NULL_SEED = 1234
_MAX_VALUES = 1_000_000  # window sums used for the thresholds (a seeded subsample beyond this)


@dataclasses.dataclass(frozen=True)
class Seqlets(Result):
    """Called seqlets, strongest first within each sequence.

    Attributes:
        example, start, end: ``(k,)`` long tensors: sequence index and half-open span of each seqlet.
        attribution: ``(k,)`` the attribution summed over the seqlet's core window (without flanks).
        thresholds: the window-sum thresholds ``(negative, positive)`` a core window had to pass.
        window_size, flank: the core window and the flank added on each side.
    """

    example: torch.Tensor
    start: torch.Tensor
    end: torch.Tensor
    attribution: torch.Tensor
    thresholds: tuple[float, float]
    window_size: int
    flank: int

    def rows(self) -> list[dict[str, Any]]:
        return [
            {"example": int(i), "start": int(s), "end": int(e), "attribution": float(a)}
            for i, s, e, a in zip(self.example, self.start, self.end, self.attribution)
        ]

    def summary(self) -> str:
        return (
            f"{len(self.example)} seqlet(s) in {len(set(self.example.tolist()))} sequence(s); window "
            f"{self.window_size} + flanks {self.flank}; thresholds {self.thresholds[0]:.3g} / {self.thresholds[1]:.3g}."
        )


@dataclasses.dataclass(frozen=True)
class MotifRecovery(Result):
    """Seqlets against known motif sites.

    Attributes:
        precision: share of seqlets overlapping a site of their sequence (nan without seqlets).
        recall: share of sites overlapped by a seqlet.
        seqlet_hits: ``(k,)`` bool, per seqlet.
        site_hits: ``(n_sites,)`` bool, per site.
        min_overlap: bases a seqlet and a site must share.
    """

    precision: float
    recall: float
    seqlet_hits: torch.Tensor
    site_hits: torch.Tensor
    min_overlap: int

    def summary(self) -> str:
        return (
            f"Motif recovery: precision {self.precision:.3g} ({int(self.seqlet_hits.sum())}/{len(self.seqlet_hits)} "
            f"seqlets on a site), recall {self.recall:.3g} ({int(self.site_hits.sum())}/{len(self.site_hits)} sites)."
        )


def call_seqlets(
    attributions: torch.Tensor,
    *,
    window_size: int = 21,
    flank: int = 10,
    target_fdr: float = 0.2,
    min_passing_frac: float = 0.03,
    max_passing_frac: float = 0.2,
) -> Seqlets:
    """Call seqlets from per-position attributions with TF-MoDISco's windowed-sum procedure.

    Args:
        attributions: ``(n, L)`` per-position scores (e.g. ``ism(...).diagnostics["position_importance"]``
            or attributions times the one-hot sequence), or ``(n, alphabet, L)`` (summed over the alphabet).
        window_size: the core window ``w`` whose sum is tested (TF-MoDISco: 21; about a motif's length).
        flank: positions added on each side of a called window; windows closer than ``flank`` to an
            end are not called.
        target_fdr: the false discovery rate of a window sum against the Laplace null.
        min_passing_frac, max_passing_frac: bounds on the share of windows that pass.

    Returns:
        :class:`Seqlets`.

    Example:
        >>> track = torch.zeros(2, 60)
        >>> track[0, 20:26] = 5.0
        >>> track += 0.01 * torch.randn(2, 60, generator=torch.Generator().manual_seed(0))
        >>> seqlets = call_seqlets(track, window_size=6, flank=2)
        >>> (int(seqlets.example[0]), int(seqlets.start[0]), int(seqlets.end[0]))
        (0, 18, 28)
    """
    track = _check_track(attributions)
    n, length = track.shape
    w = _check_int(window_size, "window_size", 1, length)
    f = _check_int(flank, "flank", 0, max((length - w) // 2, 0))
    fdr = _check_fraction(target_fdr, "target_fdr")
    low, high = (
        _check_fraction(min_passing_frac, "min_passing_frac"),
        _check_fraction(max_passing_frac, "max_passing_frac"),
    )
    if low > high:
        raise invalid_parameter("min_passing_frac", _OWNER, f"at most max_passing_frac ({high})", min_passing_frac)
    sums = track.unfold(-1, w, 1).sum(dim=-1)  # (n, L - w + 1)
    values = sums.flatten()
    if len(values) > _MAX_VALUES:
        values = torch.from_numpy(np.random.RandomState(_NULL_SEED).choice(values.numpy(), _MAX_VALUES, replace=False))
    positive, negative = values[values >= 0], values[values < 0]
    if float(sums.max() - sums.min()) == 0.0:
        raise DataError(
            f"{_OWNER}: every window sum is {float(sums.flatten()[0]):.3g}; a constant track has no seqlets."
        )
    null_positive, null_negative = _laplace_null(sums)
    top = _fdr_threshold(positive, null_positive, True, fdr)
    bottom = _fdr_threshold(negative, null_negative, False, fdr)
    both = torch.cat([positive, negative])
    passing = float(((both >= top).sum() + (both <= bottom).sum()) / len(both))
    if passing < low:
        top = float(torch.quantile(both.abs(), 1 - low))
        bottom = -top
    if passing > high:
        top = float(torch.quantile(both.abs(), 1 - high))
        bottom = -top
    score = torch.where((sums >= top) | (sums <= bottom), sums.abs(), torch.full_like(sums, -math.inf))
    if f > 0:
        score[:, :f] = -math.inf
        score[:, -f:] = -math.inf
    found = _extract(score.numpy(), w, f, w // 2 + f)
    core = [float(track[i, s + f : e - f].sum()) for i, s, e in found]
    columns = list(zip(*found)) if found else [(), (), ()]
    return Seqlets(
        example=torch.tensor(columns[0], dtype=torch.long),
        start=torch.tensor(columns[1], dtype=torch.long),
        end=torch.tensor(columns[2], dtype=torch.long),
        attribution=torch.tensor(core, dtype=torch.float64),
        thresholds=(float(bottom), float(top)),
        window_size=w,
        flank=f,
    )


def motif_recovery(
    seqlets: Seqlets, site_starts: Sequence[int] | torch.Tensor, motif_length: int, *, min_overlap: int | None = None
) -> MotifRecovery:
    """Precision and recall of seqlets against one known motif site per sequence.

    Args:
        seqlets: from :func:`call_seqlets` on sequences ``0 .. n−1``.
        site_starts: the motif's start in each sequence (``planted_motifs``:
            ``data.info["motif_start_test"]``), one per sequence, in the same order.
        motif_length: bases per motif.
        min_overlap: bases a seqlet must share with the site (default ``⌈motif_length / 2⌉``).

    Example:
        >>> s = Seqlets(torch.tensor([0, 1]), torch.tensor([3, 40]), torch.tensor([13, 50]),
        ...             torch.zeros(2), (-1.0, 1.0), 6, 2)
        >>> motif_recovery(s, [5, 10], 6).recall
        0.5
    """
    if not isinstance(seqlets, Seqlets):
        raise invalid_parameter("seqlets", "motif_recovery", "a Seqlets result of call_seqlets", seqlets)
    starts = torch.as_tensor(site_starts).long().flatten() if not isinstance(site_starts, str) else None
    if starts is None or starts.numel() == 0 or bool((starts < 0).any()):
        raise invalid_parameter("site_starts", "motif_recovery", "one non-negative start per sequence", site_starts)
    length = _check_int(motif_length, "motif_length", 1, None, owner="motif_recovery")
    overlap = (
        math.ceil(length / 2)
        if min_overlap is None
        else _check_int(min_overlap, "min_overlap", 1, length, "motif_recovery")
    )
    if len(seqlets.example) and int(seqlets.example.max()) >= len(starts):
        raise invalid_parameter(
            "site_starts",
            "motif_recovery",
            f"a start for each of the {int(seqlets.example.max()) + 1} sequences",
            site_starts,
        )
    site_start = starts[seqlets.example]
    shared = torch.minimum(seqlets.end, site_start + length) - torch.maximum(seqlets.start, site_start)
    seqlet_hits = shared >= overlap
    site_hits = torch.zeros(len(starts), dtype=torch.bool)
    site_hits[seqlets.example[seqlet_hits]] = True
    precision = float(seqlet_hits.float().mean()) if len(seqlet_hits) else math.nan
    return MotifRecovery(precision, float(site_hits.float().mean()), seqlet_hits, site_hits, overlap)


def _laplace_null(sums: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Draws from Laplace tails fitted on each side of the window sums' mode (TF-MoDISco's null)."""
    values = sums.flatten().double()
    counts, edges = torch.histogram(values, bins=1000)
    peak = int(torch.argmax(counts))
    near = values[(edges[peak] < values) & (values < edges[peak + 1])]
    counts, edges = torch.histogram(near, bins=1000)
    peak = int(torch.argmax(counts))
    mode = float(edges[peak] + edges[peak + 1]) / 2
    above, below = values[values >= mode], values[values <= mode]
    quantiles = torch.arange(19, dtype=torch.float64) * 5.0 / 100
    rates = -torch.log(1 - quantiles)
    rate_above = torch.max(rates / (torch.quantile(above, quantiles) - mode))
    rate_below = torch.max(rates / (torch.quantile(below, 1 - quantiles) - mode).abs())
    uniform = torch.from_numpy(np.random.RandomState(_NULL_SEED).uniform(size=(_NULL_DRAWS, 2)))
    tail = torch.log(1 - uniform[:, 1])
    draws = torch.where(uniform[:, 0] < len(above) / len(values), -tail / rate_above + mode, mode + tail / rate_below)
    return draws[draws >= 0], draws[draws < 0]


def _fdr_threshold(values: torch.Tensor, null: torch.Tensor, increasing: bool, target_fdr: float) -> float:
    """The first value (in data order, as TF-MoDISco) whose isotonic precision is >= 1 - target_fdr."""
    from sklearn.isotonic import IsotonicRegression

    if len(values) == 0 or len(null) == 0:
        return math.inf if increasing else -math.inf
    points = torch.cat([values.double(), null.double()]).numpy()
    labels = np.concatenate([np.ones(len(values)), np.zeros(len(null))])
    weights = np.concatenate([np.ones(len(values)), np.full(len(null), len(values) / len(null))])
    regression = IsotonicRegression(out_of_bounds="clip", increasing=increasing).fit(
        points, labels, sample_weight=weights
    )
    fitted = torch.from_numpy(regression.transform(values.double().numpy()))
    least = regression.X_min_ if increasing else regression.X_max_
    floor = max(float(regression.transform([least])[0]), 1e-7)
    negatives = -1 / (1 - 1 / floor)
    if negatives > 1.0 or negatives < 0.95:
        negatives = max(min(1.0, negatives), 0.95)
    precision = (1 + negatives * (1 - 1 / fitted.clamp(min=1e-7))).clamp(0.0, 1.0)
    precision[-1] = 1
    return float(values[precision >= 1 - target_fdr][0])


def _extract(score: np.ndarray, window: int, flank: int, suppress: int) -> list[tuple[int, int, int]]:
    """Greedy extraction: the best passing window per sequence, suppress around it, repeat."""
    found = []
    length = score.shape[1]
    for i in range(score.shape[0]):
        while True:
            best = int(np.argmax(score[i]))
            if score[i, best] == -np.inf:
                break
            found.append((i, best - flank, best + window + flank))
            score[
                i, max(int(np.floor(best + 0.5 - suppress)), 0) : min(int(np.ceil(best + 0.5 + suppress)), length)
            ] = -np.inf
    return found


def _check_track(attributions: Any) -> torch.Tensor:
    if not isinstance(attributions, torch.Tensor) or attributions.dim() not in (2, 3) or attributions.numel() == 0:
        raise invalid_parameter(
            "attributions", _OWNER, "a non-empty tensor (n, length) or (n, alphabet, length)", attributions
        )
    track = attributions.detach().cpu().double()
    if track.dim() == 3:
        track = track.sum(1)
    if not bool(torch.isfinite(track).all()):
        raise DataError(f"{_OWNER}: the attributions contain NaN or infinite values.")
    return track


def _check_int(value: Any, name: str, low: int, high: int | None, owner: str = _OWNER) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, np.integer))
        or value < low
        or (high is not None and value > high)
    ):
        expected = f"an int in [{low}, {high}]" if high is not None else f"an int >= {low}"
        raise invalid_parameter(name, owner, expected, value)
    return int(value)


def _check_fraction(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise invalid_parameter(name, _OWNER, "a number in [0, 1]", value)
    return float(value)
