import math

import pytest
import torch
from scipy.stats import entropy as scipy_entropy

from deepscope.attribution.metrics import attribution_entropy, complexity, sparseness
from deepscope.errors import DeepscopeError


def test_gini_matches_mean_absolute_difference_definition():
    # G = Σ_i Σ_j |a_i − a_j| / (2 d Σ_i a_i): an independent O(d²) formula of the same index
    a = torch.randn(5, 17, dtype=torch.float64)
    magnitudes = a.abs()
    pairwise = (magnitudes.unsqueeze(2) - magnitudes.unsqueeze(1)).abs().sum(dim=(1, 2))
    reference = pairwise / (2 * 17 * magnitudes.sum(dim=1))
    torch.testing.assert_close(sparseness(a), reference, rtol=1e-12, atol=1e-12)


def test_gini_and_entropy_extremes():
    one_hot = torch.zeros(1, 8)
    one_hot[0, 3] = -5.0
    uniform = torch.ones(1, 8)
    assert sparseness(one_hot).item() == pytest.approx(1 - 1 / 8)
    assert sparseness(uniform).item() == pytest.approx(0.0, abs=1e-15)
    assert attribution_entropy(one_hot).item() == 0.0
    assert attribution_entropy(uniform).item() == pytest.approx(math.log(8))
    assert math.isnan(sparseness(torch.zeros(1, 4)).item())


def test_entropy_matches_scipy():
    a = torch.randn(4, 3, 5, dtype=torch.float64)
    ours = attribution_entropy(a)
    for i in range(4):
        assert ours[i].item() == pytest.approx(scipy_entropy(a[i].abs().reshape(-1).numpy()), rel=1e-12)


def test_complexity_summary_and_errors():
    result = complexity(torch.rand(6, 10))
    mean, error, count = result.means["sparseness"]
    assert count == 6 and error > 0 and 0 < mean < 1
    # summary() is the Result's headline method again (the table was a field that shadowed it)
    assert result.summary() == (
        f"Complexity: sparseness {mean:.3g} ± {error:.2g} (6 examples), "
        f"entropy {result.means['entropy'][0]:.3g} ± {result.means['entropy'][1]:.2g} (6 examples)."
    )
    with pytest.raises(DeepscopeError):
        sparseness(torch.tensor([[float("nan"), 1.0]]))
    with pytest.raises(DeepscopeError):
        attribution_entropy(torch.ones(3))
