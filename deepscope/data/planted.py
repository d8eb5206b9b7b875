"""Datasets with planted ground truth: the label signal lives only where a known mask says it does.

They exist to judge explanations (attribution localisation, OpenXAI-style ground-truth agreement):
every example carries a mask shaped like its input, 1 exactly where the label evidence was planted,
and everything outside the mask is statistically independent of the label (noise, distractors, decoys).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from deepscope.data._base import DatasetSplits
from deepscope.data._checks import check_n_samples, check_seed, check_test_fraction, standardise, stratified_split
from deepscope.errors import invalid_parameter

__all__ = ["planted_tabular", "planted_image", "planted_motifs"]

IMAGE_SIZE = 16
PATCH = 5
#: top-left corners of the four candidate evidence patches (one per quadrant of the 16x16 image)
PATCH_CORNERS = ((1, 1), (1, 10), (10, 1), (10, 10))
#: 5x5 binary class templates: plus, cross, square outline, horizontal bars, vertical bars, diagonal,
#: anti-diagonal, centre block; class c uses template c.
_TEMPLATE_ROWS = (
    ("00100", "00100", "11111", "00100", "00100"),
    ("10001", "01010", "00100", "01010", "10001"),
    ("11111", "10001", "10001", "10001", "11111"),
    ("11111", "00000", "11111", "00000", "11111"),
    ("10101", "10101", "10101", "10101", "10101"),
    ("10000", "01000", "00100", "00010", "00001"),
    ("00001", "00010", "00100", "01000", "10000"),
    ("00000", "01110", "01110", "01110", "00000"),
)
IMAGE_TEMPLATES = np.array([[[c == "1" for c in row] for row in t] for t in _TEMPLATE_ROWS], dtype=np.float32)
BASES = "ACGT"


def planted_tabular(
    *,
    seed: int = 0,
    n_samples: int | None = None,
    test_fraction: float = 0.25,
    n_features: int = 20,
    n_informative: int = 5,
    num_classes: int = 2,
    clusters_per_class: int = 2,
    separation: float = 2.0,
) -> DatasetSplits:
    """Gaussian clusters whose class signal lives in a known subset of features; the rest is pure noise.

    After OpenXAI's synthetic data (Agarwal et al., 2022): a seeded subset ``S`` of ``n_informative``
    features is chosen; each class owns ``clusters_per_class`` cluster centres ``mu`` drawn on ``S``
    with scale ``separation``; an example of class ``y`` is ``x_S ~ N(mu, I)`` for one of its class's
    centres and ``x_j ~ N(0, 1)`` independently of ``y`` for every ``j`` outside ``S``. So
    ``p(y | x) = p(y | x_S)`` exactly, and the ground-truth mask is the indicator of ``S`` (the same for
    every example). Features are then standardised with train statistics.

    Args:
        seed: fixes the informative subset, the centres, the samples and the split.
        n_samples: total examples (default 2,000).
        test_fraction: share of each class held out.
        n_features: total features ``d``.
        n_informative: ``|S|``, features carrying the label signal (1 <= |S| < d).
        num_classes: number of classes.
        clusters_per_class: Gaussian clusters per class (a multimodal class needs a non-linear model).
        separation: scale of the cluster centres (larger = easier).

    Returns:
        DatasetSplits with ``x`` float32 ``(n, d)``, ``y`` int64, ``mask_*`` float32 ``(n, d)`` and
        ``info["informative_features"]``.

    Example:
        >>> data = planted_tabular(seed=0, n_samples=200)
        >>> data.mask_train.shape == data.x_train.shape
        True
    """
    owner = "deepscope.datasets.load('planted_tabular')"
    seed, test_fraction, n = _common(seed, test_fraction, n_samples, owner, default=2000)
    n_features = _int(n_features, "n_features", owner, 2)
    n_informative = _int(n_informative, "n_informative", owner, 1, n_features - 1)
    num_classes = _int(num_classes, "num_classes", owner, 2)
    clusters_per_class = _int(clusters_per_class, "clusters_per_class", owner, 1)
    separation = _positive(separation, "separation", owner)
    rng = np.random.default_rng(seed)
    informative = np.sort(rng.choice(n_features, n_informative, replace=False))
    centres = rng.normal(0.0, separation, size=(num_classes, clusters_per_class, n_informative))
    y = _balanced_labels(rng, n, num_classes)
    cluster = rng.integers(0, clusters_per_class, size=n)
    x = rng.normal(0.0, 1.0, size=(n, n_features))
    x[:, informative] += centres[y, cluster]
    mask = np.zeros((n, n_features), dtype=np.float32)
    mask[:, informative] = 1.0
    train, test = stratified_split(y, n, test_fraction, seed)
    x_train, x_test, stats = standardise(x[train], x[test])
    info = {
        "seed": seed,
        "informative_features": informative.tolist(),
        "clusters_per_class": clusters_per_class,
        "separation": separation,
        "standardisation": stats,
    }
    names = tuple(f"x{j}{'*' if j in set(informative.tolist()) else ''}" for j in range(n_features))
    text = f"{n_informative} of {n_features} features carry the label signal (the rest are N(0,1) noise)"
    return _splits("planted_tabular", x_train, x_test, y, mask, train, test, num_classes, info, text, names)


def planted_image(
    *,
    seed: int = 0,
    n_samples: int | None = None,
    test_fraction: float = 0.25,
    num_classes: int = 4,
    noise: float = 0.2,
    distractor_probability: float = 0.75,
) -> DatasetSplits:
    """16x16 images whose class is drawn only inside one known 5x5 patch; distractors and noise elsewhere.

    Each example picks one of four patch positions (one per quadrant, uniformly, independently of the
    label) and draws the 5x5 template of its class there (plus, cross, square, bars, ... see
    ``IMAGE_TEMPLATES``). Every other quadrant independently receives, with ``distractor_probability``,
    a random speckle patch (each pixel on with probability 0.4 at intensity U(0.5, 1)) that no class
    owns; the whole image gets U(0, ``noise``) background. Pixels are clipped to [0, 1]. Outside the
    evidence patch the image is independent of the label, so the mask (1 on the patch) is the exact
    location of the class evidence, in the spirit of the localisation benchmarks of Arras et al. (2022).

    Args:
        seed: fixes samples and split.
        n_samples: total images (default 2,000).
        test_fraction: share of each class held out.
        num_classes: 2..8 classes (one template each).
        noise: amplitude of the uniform background noise, in [0, 0.5].
        distractor_probability: chance that each non-evidence quadrant holds a speckle distractor.

    Returns:
        DatasetSplits with ``x`` float32 ``(n, 1, 16, 16)`` in [0, 1], ``y`` int64, ``mask_*`` like ``x`` and
        ``info["patch_corner_train"/"patch_corner_test"]`` (row, col of each example's evidence patch).

    Example:
        >>> data = planted_image(n_samples=80)
        >>> tuple(data.mask_train.shape[1:])
        (1, 16, 16)
    """
    owner = "deepscope.datasets.load('planted_image')"
    seed, test_fraction, n = _common(seed, test_fraction, n_samples, owner, default=2000)
    num_classes = _int(num_classes, "num_classes", owner, 2, len(IMAGE_TEMPLATES))
    noise = _bounded(noise, "noise", owner, 0.0, 0.5)
    distractor_probability = _bounded(distractor_probability, "distractor_probability", owner, 0.0, 1.0)
    rng = np.random.default_rng(seed)
    y = _balanced_labels(rng, n, num_classes)
    position = rng.integers(0, len(PATCH_CORNERS), size=n)
    x = rng.uniform(0.0, noise, size=(n, IMAGE_SIZE, IMAGE_SIZE))
    mask = np.zeros((n, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    speckle_on = rng.random((n, len(PATCH_CORNERS), PATCH, PATCH)) < 0.4
    speckle_level = rng.uniform(0.5, 1.0, size=(n, len(PATCH_CORNERS), PATCH, PATCH))
    has_distractor = rng.random((n, len(PATCH_CORNERS))) < distractor_probability
    for slot, (row, col) in enumerate(PATCH_CORNERS):
        window = (slice(None), slice(row, row + PATCH), slice(col, col + PATCH))
        evidence = position == slot
        patch = x[window]  # a view: the boolean-indexed assignments below write into x
        patch[evidence] = np.maximum(patch[evidence], IMAGE_TEMPLATES[y[evidence]])
        distract = ~evidence & has_distractor[:, slot]
        patch[distract] = np.maximum(patch[distract], speckle_on[distract, slot] * speckle_level[distract, slot])
        mask[window][evidence] = 1.0
    x = np.clip(x, 0.0, 1.0).astype(np.float32)[:, None]
    mask = mask[:, None]
    train, test = stratified_split(y, n, test_fraction, seed)
    corners = np.array(PATCH_CORNERS)[position]
    info = {
        "seed": seed,
        "patch_size": PATCH,
        "patch_corners": [list(c) for c in PATCH_CORNERS],
        "patch_corner_train": corners[train].tolist(),
        "patch_corner_test": corners[test].tolist(),
        "noise": noise,
        "distractor_probability": distractor_probability,
    }
    text = "class templates drawn inside one known 5x5 patch per image, speckle distractors elsewhere"
    return _splits("planted_image", x[train], x[test], y, mask, train, test, num_classes, info, text, None)


def planted_motifs(
    *,
    seed: int = 0,
    n_samples: int | None = None,
    test_fraction: float = 0.25,
    sequence_length: int = 100,
    motif_length: int = 8,
    num_classes: int = 2,
    n_decoys: int = 2,
    mutation_rate: float = 0.0,
) -> DatasetSplits:
    """One-hot DNA in which a class-specific motif, implanted at a known position, determines the label.

    A seeded random motif of ``motif_length`` bases is drawn per class and ``n_decoys`` further decoy
    motifs that no class owns. Each sequence is uniform random bases (A, C, G, T); the motif of its
    class is written at a random start position, and each decoy motif at another random position not
    overlapping it (decoys and positions are independent of the label). With ``mutation_rate`` each
    implanted class-motif base is replaced by a random base with that probability. The mask is 1 on
    all four channels of the positions covered by the class motif (in the style of the simulated
    regulatory-grammar data used to test DeepLIFT, Shrikumar et al., 2017).

    Args:
        seed: fixes motifs, samples and split.
        n_samples: total sequences (default 2,000).
        test_fraction: share of each class held out.
        sequence_length: ``L``, bases per sequence.
        motif_length: bases per motif (4..L/ (2 + n_decoys)).
        num_classes: classes, one motif each.
        n_decoys: decoy motifs implanted per sequence (independent of the label).
        mutation_rate: per-base substitution probability inside the class motif, in [0, 0.5].

    Returns:
        DatasetSplits with ``x`` float32 one-hot ``(n, 4, L)`` (channels A, C, G, T), ``y`` int64,
        ``mask_*`` like ``x``, ``info["motifs"]``, ``info["decoys"]`` and ``info["motif_start_train"/"_test"]``.

    Example:
        >>> data = planted_motifs(n_samples=60)
        >>> tuple(data.x_train.shape[1:])
        (4, 100)
    """
    owner = "deepscope.datasets.load('planted_motifs')"
    seed, test_fraction, n = _common(seed, test_fraction, n_samples, owner, default=2000)
    num_classes = _int(num_classes, "num_classes", owner, 2)
    n_decoys = _int(n_decoys, "n_decoys", owner, 0)
    sequence_length = _int(sequence_length, "sequence_length", owner, 8)
    motif_length = _int(motif_length, "motif_length", owner, 4, max(4, sequence_length // (2 + n_decoys)))
    mutation_rate = _bounded(mutation_rate, "mutation_rate", owner, 0.0, 0.5)
    if (1 + n_decoys) * motif_length > sequence_length:
        raise invalid_parameter(
            "sequence_length",
            owner,
            f"at least (1 + n_decoys) * motif_length = {(1 + n_decoys) * motif_length}",
            sequence_length,
        )
    rng = np.random.default_rng(seed)
    motifs = _distinct_motifs(rng, num_classes + n_decoys, motif_length)
    y = _balanced_labels(rng, n, num_classes)
    bases = rng.integers(0, 4, size=(n, sequence_length))
    # non-overlapping start positions: sample slots of a compressed line, then spread them (stars and bars)
    n_motifs = 1 + n_decoys
    free = sequence_length - n_motifs * motif_length
    starts = np.sort(rng.integers(0, free + 1, size=(n, n_motifs)), axis=1) + np.arange(n_motifs) * motif_length
    order = np.argsort(rng.random((n, n_motifs)), axis=1)  # which slot holds the class motif is random too
    starts = np.take_along_axis(starts, order, axis=1)
    class_start = starts[:, 0]
    offsets = np.arange(motif_length)
    rows = np.arange(n)[:, None]
    implanted = motifs[y].copy()
    mutate = rng.random(implanted.shape) < mutation_rate
    implanted[mutate] = rng.integers(0, 4, size=int(mutate.sum()))
    bases[rows, class_start[:, None] + offsets] = implanted
    for decoy in range(n_decoys):
        bases[rows, starts[:, 1 + decoy, None] + offsets] = motifs[num_classes + decoy]
    x = np.zeros((n, 4, sequence_length), dtype=np.float32)
    x[rows, bases, np.arange(sequence_length)] = 1.0
    mask = np.zeros_like(x)
    mask[rows, :, class_start[:, None] + offsets] = 1.0
    train, test = stratified_split(y, n, test_fraction, seed)
    info = {
        "seed": seed,
        "alphabet": BASES,
        "motifs": ["".join(BASES[b] for b in m) for m in motifs[:num_classes]],
        "decoys": ["".join(BASES[b] for b in m) for m in motifs[num_classes:]],
        "motif_start_train": class_start[train].tolist(),
        "motif_start_test": class_start[test].tolist(),
        "mutation_rate": mutation_rate,
    }
    text = f"one-hot DNA of length {sequence_length}: a class motif at a known position plus {n_decoys} decoy motif(s)"
    return _splits("planted_motifs", x[train], x[test], y, mask, train, test, num_classes, info, text, None)


def _distinct_motifs(rng: np.random.Generator, count: int, length: int) -> np.ndarray:
    """``count`` random motifs, pairwise at Hamming distance >= length / 2 (redrawn until they are)."""
    motifs: list[np.ndarray] = []
    while len(motifs) < count:
        candidate = rng.integers(0, 4, size=length)
        if all(np.sum(candidate != m) >= length / 2 for m in motifs):
            motifs.append(candidate)
    return np.stack(motifs)


def _balanced_labels(rng: np.random.Generator, n: int, num_classes: int) -> np.ndarray:
    """A seeded shuffle of ``n`` labels with class counts differing by at most one."""
    return rng.permutation(np.arange(n) % num_classes).astype(np.int64)


def _common(seed: Any, test_fraction: Any, n_samples: Any, owner: str, default: int) -> tuple[int, float, int]:
    seed = check_seed(seed, owner)
    test_fraction = check_test_fraction(test_fraction, owner)
    n_samples = check_n_samples(n_samples, owner, minimum=8)
    return seed, test_fraction, default if n_samples is None else n_samples


def _int(value: Any, name: str, owner: str, minimum: int, maximum: int | None = None) -> int:
    bounds = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise invalid_parameter(name, owner, f"an int {bounds}", value)
    if value < minimum or (maximum is not None and value > maximum):
        raise invalid_parameter(name, owner, f"an int {bounds}", value)
    return int(value)


def _bounded(value: Any, name: str, owner: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= float(value) <= high:
        raise invalid_parameter(name, owner, f"a float in [{low}, {high}]", value)
    return float(value)


def _positive(value: Any, name: str, owner: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < float(value) < float("inf"):
        raise invalid_parameter(name, owner, "a finite float > 0", value)
    return float(value)


def _splits(
    name: str,
    x_train: np.ndarray,
    x_test: np.ndarray,
    y: np.ndarray,
    mask: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    num_classes: int,
    info: dict[str, Any],
    text: str,
    feature_names: tuple[str, ...] | None,
) -> DatasetSplits:
    tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    return DatasetSplits(
        name=name,
        x_train=tensor(x_train.astype(np.float32)),
        y_train=tensor(y[train]),
        x_test=tensor(x_test.astype(np.float32)),
        y_test=tensor(y[test]),
        task="classification",
        num_classes=num_classes,
        mask_train=tensor(mask[train].astype(np.float32)),
        mask_test=tensor(mask[test].astype(np.float32)),
        feature_names=feature_names,
        description=f"{name}: {text}; {len(train)} train / {len(test)} test, seed {info['seed']}.",
        info=info,
    )
