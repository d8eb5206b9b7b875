import math

import pytest
import torch

from deepscope.attribution.representation import cka, layer_cka, model_cka
from deepscope.errors import DeepscopeError
from deepscope.testing import check_model_untouched


def _hsic_cka(x, y, kernel):
    """Direct HSIC formula with n x n Gram matrices (Gretton et al. 2005; Kornblith et al. 2019, eq. 3)."""
    n = x.shape[0]
    h = torch.eye(n, dtype=torch.float64) - 1.0 / n
    if kernel == "linear":
        k, l_ = x @ x.t(), y @ y.t()
    else:

        def gram(m):
            d = (m.unsqueeze(1) - m.unsqueeze(0)).pow(2).sum(dim=2).sqrt()
            i, j = torch.triu_indices(len(m), len(m), offset=1)
            sigma = d[i, j].median()
            return torch.exp(-(d**2) / (2 * sigma**2))

        k, l_ = gram(x), gram(y)
    hsic = lambda a, b: torch.trace(a @ h @ b @ h)  # noqa: E731
    return (hsic(k, l_) / torch.sqrt(hsic(k, k) * hsic(l_, l_))).item()


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_cka_matches_the_direct_hsic_formula(kernel):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(40, 5, generator=generator, dtype=torch.float64)
    y = torch.tanh(x @ torch.randn(5, 7, generator=generator, dtype=torch.float64)) + 0.3 * torch.randn(
        40, 7, generator=generator, dtype=torch.float64
    )
    assert cka(x, y, kernel=kernel) == pytest.approx(_hsic_cka(x, y, kernel), rel=1e-10)


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_cka_invariances(kernel):
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(30, 6, generator=generator, dtype=torch.float64)
    y = torch.randn(30, 4, generator=generator, dtype=torch.float64) + x[:, :4]
    rotation, _ = torch.linalg.qr(torch.randn(6, 6, generator=generator, dtype=torch.float64))
    base = cka(x, y, kernel=kernel)
    assert cka(x, x, kernel=kernel) == pytest.approx(1.0, abs=1e-12)
    assert cka(7.5 * x @ rotation + 3.0, y, kernel=kernel) == pytest.approx(base, rel=1e-9)  # orthogonal, scale, shift
    assert cka(y, x, kernel=kernel) == pytest.approx(base, rel=1e-12)
    # not invariant to an arbitrary (anisotropic) invertible map
    stretch = torch.diag(torch.tensor([10.0, 1, 1, 1, 1, 0.1], dtype=torch.float64))
    assert abs(cka(x @ stretch, y, kernel=kernel) - base) > 1e-3


def test_layer_and_model_cka_on_networks():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Dropout(0.5), torch.nn.Linear(6, 3))
    x = torch.randn(25, 4)
    result = check_model_untouched(layer_cka, net, net, x)
    assert result.row_layers == ["0", "1", "3"]  # Dropout skipped
    torch.testing.assert_close(result.matrix, result.matrix.t())
    torch.testing.assert_close(result.matrix.diagonal(), torch.ones(3, dtype=result.matrix.dtype))
    twin = model_cka(net, x, net, layers=["1"], other_layers=["0", "1"])
    assert twin.matrix[0, 1].item() == pytest.approx(1.0, abs=1e-12)
    assert twin.matrix[0, 0].item() == pytest.approx(result.matrix[1, 0].item(), abs=1e-12)
    assert len(result.rows()) == 3


def test_cka_validation():
    with pytest.raises(DeepscopeError, match="kernel"):
        cka(torch.randn(5, 2), torch.randn(5, 2), kernel="poly")
    with pytest.raises(DeepscopeError, match="second"):
        cka(torch.randn(5, 2), torch.randn(6, 2))
    assert math.isnan(cka(torch.ones(5, 2), torch.randn(5, 2)))
    with pytest.raises(DeepscopeError, match="layers"):
        layer_cka(torch.nn.Linear(2, 2), torch.randn(4, 2), layers=["nope"])
