import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from deepscope.attribution.metrics import (
    attribution_auroc,
    localisation,
    precision_at_k,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
)
from deepscope.errors import DeepscopeError


def _random_case(seed=0, batch=6, d=30, ties=True):
    generator = torch.Generator().manual_seed(seed)
    scores = torch.randn(batch, d, generator=generator, dtype=torch.float64)
    if ties:  # quantise so that many scores tie, the case sklearn handles with average ranks
        scores = (scores * 2).round() / 2
    mask = (torch.rand(batch, d, generator=generator) < 0.3).long()
    mask[:, 0], mask[:, 1] = 1, 0  # both classes present
    return scores, mask


@pytest.mark.parametrize("absolute", [True, False])
def test_auroc_matches_sklearn_with_ties(absolute):
    scores, mask = _random_case()
    ours = attribution_auroc(scores, mask, absolute=absolute)
    for i in range(scores.shape[0]):
        reference = roc_auc_score(mask[i].numpy(), (scores[i].abs() if absolute else scores[i]).numpy())
        assert ours[i].item() == pytest.approx(reference, abs=1e-12)  # both exact rational arithmetic in float64


def test_auroc_on_image_shaped_masks_and_undefined_cases():
    scores = torch.rand(2, 1, 4, 4, dtype=torch.float64)
    mask = torch.zeros(2, 1, 4, 4)
    mask[0, 0, :2, :2] = 1  # example 1 has an empty mask -> undefined
    result = attribution_auroc(scores, mask)
    assert result[0].item() == pytest.approx(roc_auc_score(mask[0].reshape(-1), scores[0].reshape(-1)), abs=1e-12)
    assert math.isnan(result[1].item())
    assert localisation(scores, mask).means["auroc"][2] == 1  # one defined example counted


def test_precision_at_k_and_rank_accuracy_by_brute_force():
    scores, mask = _random_case(seed=1, ties=False)
    for k in (1, 5, 12):
        ours = precision_at_k(scores, mask, k)
        for i in range(scores.shape[0]):
            top = np.argsort(-scores[i].abs().numpy())[:k]
            assert ours[i].item() == pytest.approx(mask[i].numpy()[top].mean(), abs=1e-12)
    rank = relevance_rank_accuracy(scores, mask)
    for i in range(scores.shape[0]):
        size = int(mask[i].sum())
        top = np.argsort(-scores[i].abs().numpy())[:size]
        assert rank[i].item() == pytest.approx(mask[i].numpy()[top].sum() / size, abs=1e-12)


def test_relevance_mass_accuracy_by_hand():
    scores = torch.tensor([[3.0, 1.0, -2.0, 0.0]])
    mask = torch.tensor([[1, 0, 1, 0]])
    assert relevance_mass_accuracy(scores, mask, absolute=False).item() == pytest.approx(3 / 4)
    assert relevance_mass_accuracy(scores, mask).item() == pytest.approx(5 / 6)


def test_perfect_and_inverted_maps():
    mask = torch.zeros(3, 10)
    mask[:, :3] = 1
    perfect = mask + 0.01 * torch.rand(3, 10)
    result = localisation(perfect, mask, k=3)
    assert result.means["auroc"][0] == 1.0 and result.means["precision_at_k"][0] == 1.0
    assert localisation(1 - mask, mask).means["auroc"][0] == 0.0
    assert {row["metric"] for row in result.rows()} >= {"auroc", "relevance_mass_accuracy"}
    assert result.summary().startswith("Localisation: auroc 1 ± 0 (3 examples), precision_at_k 1 ± 0 (3 examples)")


def test_bad_masks_raise():
    with pytest.raises(DeepscopeError, match="mask"):
        attribution_auroc(torch.rand(2, 4), torch.ones(2, 5))
    with pytest.raises(DeepscopeError, match="binary"):
        attribution_auroc(torch.rand(2, 4), torch.full((2, 4), 0.5))
    with pytest.raises(DeepscopeError, match="'k'"):
        precision_at_k(torch.rand(2, 4), torch.ones(2, 4), k=5)
