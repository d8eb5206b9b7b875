import math

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr, rankdata, spearmanr

from deepscope.attribution.metrics._common import average_ranks, mean_and_standard_error, row_pearson, row_spearman


def test_average_ranks_match_scipy_rankdata_with_heavy_ties():
    generator = torch.Generator().manual_seed(0)
    values = torch.randint(0, 5, (20, 33), generator=generator).double()
    ours = average_ranks(values)
    for i in range(20):
        np.testing.assert_array_equal(ours[i].numpy(), rankdata(values[i].numpy()))  # exact halves


def test_row_correlations_match_scipy():
    generator = torch.Generator().manual_seed(1)
    a = torch.randn(6, 15, generator=generator, dtype=torch.float64)
    b = a + torch.randn(6, 15, generator=generator, dtype=torch.float64)
    b[:, :5] = b[:, :5].round()  # some ties
    for i in range(6):
        assert row_pearson(a, b)[i].item() == pytest.approx(pearsonr(a[i], b[i])[0], abs=1e-12)
        assert row_spearman(a, b)[i].item() == pytest.approx(spearmanr(a[i], b[i])[0], abs=1e-12)
    assert math.isnan(row_pearson(torch.ones(1, 4), torch.randn(1, 4))[0].item())


def test_mean_and_standard_error_skip_non_finite():
    mean, error, count = mean_and_standard_error(torch.tensor([1.0, 3.0, float("nan")]))
    assert (mean, count) == (2.0, 2) and error == pytest.approx(math.sqrt(2) / math.sqrt(2))
    assert mean_and_standard_error(torch.tensor([float("nan")]))[2] == 0
