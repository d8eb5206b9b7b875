"""Planted ground truth: the label is a function of the masked features only.

Oracle: a simple rule or a logistic regression that sees only the masked region reaches (near)
perfect test accuracy, while one that sees only the unmasked region stays at chance.
"""

import math

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from deepscope.data.planted import IMAGE_TEMPLATES, PATCH, planted_image, planted_motifs, planted_tabular
from deepscope.errors import InvalidParameterError


def _logistic_accuracy(data, region):
    """Test accuracy of a logistic regression fitted on x * region(mask)."""
    features = [
        (x * region(m)).reshape(len(x), -1).numpy()
        for x, m in ((data.x_train, data.mask_train), (data.x_test, data.mask_test))
    ]
    model = LogisticRegression(max_iter=500).fit(features[0], data.y_train.numpy())
    return model.score(features[1], data.y_test.numpy())


def _chance_band(data):
    """Chance accuracy 1/C plus 4 binomial standard errors of the test-set accuracy.

    Outside the mask the inputs are independent of the label, so any classifier's test accuracy is
    Binomial(n_test, 1/C)/n_test around 1/C; 4 SE keeps a fixed-seed test far from a false alarm
    while a leak of even a few percent of signal would push it well past the band.
    """
    chance = 1.0 / data.num_classes
    return chance + 4 * math.sqrt(chance * (1 - chance) / len(data.y_test))


@pytest.mark.parametrize("generator", [planted_tabular, planted_image, planted_motifs])
def test_shapes_determinism_and_masks(generator):
    a, b, c = generator(seed=5, n_samples=400), generator(seed=5, n_samples=400), generator(seed=6, n_samples=400)
    assert len(a.x_train) + len(a.x_test) == 400
    assert a.mask_train.shape == a.x_train.shape and a.mask_test.shape == a.x_test.shape
    assert a.x_train.dtype == torch.float32 and a.y_train.dtype == torch.int64
    assert set(torch.unique(a.mask_train).tolist()) == {0.0, 1.0}
    for name in ("x_train", "y_train", "x_test", "y_test", "mask_train", "mask_test"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert not torch.equal(a.x_train, c.x_train)
    assert torch.bincount(a.y_train).min() > 0


def test_planted_tabular_signal_only_in_informative_features():
    data = planted_tabular(seed=0, n_samples=2000, n_features=20, n_informative=5)
    informative = data.info["informative_features"]
    assert len(informative) == 5
    assert torch.equal(data.mask_train[0].nonzero().flatten(), torch.tensor(informative))
    assert _logistic_accuracy(data, lambda m: m) > 0.95  # 2 well-separated clusters per class: near 1
    assert _logistic_accuracy(data, lambda m: 1 - m) < _chance_band(data)


def test_planted_image_rule_on_patch_and_chance_outside():
    data = planted_image(seed=0, n_samples=1200, num_classes=4)
    assert data.x_train.shape[1:] == (1, 16, 16)
    assert 0.0 <= float(data.x_train.min()) and float(data.x_train.max()) <= 1.0
    assert torch.all(data.mask_train.sum(dim=(1, 2, 3)) == PATCH * PATCH)
    # rule: read the 5x5 patch the mask marks and pick the template with the largest correlation
    templates = torch.from_numpy(IMAGE_TEMPLATES[: data.num_classes]).reshape(data.num_classes, -1)
    templates = templates - templates.mean(1, keepdim=True)
    patches = data.x_test[data.mask_test.bool()].reshape(len(data.x_test), -1)
    predicted = (patches @ templates.T).argmax(1)
    assert (predicted == data.y_test).float().mean() == 1.0  # noise < 0.5 never flips a template pixel
    corners = torch.tensor(data.info["patch_corner_test"])
    rows, cols = data.mask_test[:, 0].nonzero(as_tuple=True)[1:]
    assert torch.equal(rows.reshape(len(corners), -1).min(1).values, corners[:, 0])
    assert torch.equal(cols.reshape(len(corners), -1).min(1).values, corners[:, 1])
    assert _logistic_accuracy(data, lambda m: m) > 0.95
    assert _logistic_accuracy(data, lambda m: 1 - m) < _chance_band(data)


def test_planted_motifs_one_hot_and_motif_at_recorded_position():
    data = planted_motifs(seed=0, n_samples=800, sequence_length=100, motif_length=8, n_decoys=2)
    assert data.x_train.shape[1:] == (4, 100)
    assert torch.all(data.x_train.sum(1) == 1.0)  # exactly one base per position
    motifs = data.info["motifs"]
    starts = data.info["motif_start_train"]
    for x, y, start in zip(data.x_train[:100], data.y_train[:100], starts[:100]):
        sequence = "".join("ACGT"[i] for i in x.argmax(0).tolist())
        assert sequence[start : start + 8] == motifs[int(y)]
    for decoy in data.info["decoys"]:
        assert decoy not in motifs
    # rule: the bases under the mask equal exactly one class motif
    masked = data.x_test * data.mask_test
    positions = masked.sum(1).bool()
    windows = masked.argmax(1)[positions].reshape(len(data.x_test), 8)
    encoded = torch.tensor([["ACGT".index(b) for b in m] for m in motifs])
    predicted = (windows[:, None, :] == encoded[None]).sum(-1).argmax(1)
    assert torch.equal(predicted, data.y_test)
    assert _logistic_accuracy(data, lambda m: m) > 0.95
    assert _logistic_accuracy(data, lambda m: 1 - m) < _chance_band(data)


def test_mutations_change_some_motif_bases():
    data = planted_motifs(seed=1, n_samples=400, mutation_rate=0.25)
    motifs, starts = data.info["motifs"], data.info["motif_start_train"]
    mismatches = []
    for x, y, start in zip(data.x_train, data.y_train, starts):
        sequence = "".join("ACGT"[i] for i in x.argmax(0).tolist())
        mismatches.append(sum(a != b for a, b in zip(sequence[start : start + 8], motifs[int(y)])))
    # each base is redrawn w.p. 0.25 and lands on a different base w.p. 3/4: mean 8 * 0.1875 = 1.5 per motif;
    # over 300 motifs the SE of the mean is ~0.07, so [1.2, 1.8] is a > 4 SE band
    assert 1.2 < np.mean(mismatches) < 1.8


@pytest.mark.parametrize(
    "generator, kwargs, match",
    [
        (planted_tabular, {"n_informative": 20, "n_features": 20}, "n_informative"),
        (planted_image, {"num_classes": 9}, "num_classes"),
        (planted_image, {"noise": 0.9}, "noise"),
        (planted_motifs, {"motif_length": 40}, "motif_length"),
        (planted_motifs, {"mutation_rate": -0.1}, "mutation_rate"),
        (planted_tabular, {"n_samples": 3}, "n_samples"),
    ],
)
def test_invalid_options(generator, kwargs, match):
    with pytest.raises(InvalidParameterError, match=match):
        generator(**kwargs)
