import numpy as np
import pytest
import torch
from scipy.sparse import lil_matrix
from scipy.sparse.linalg import spsolve

from deepscope.attribution.metrics import noisy_linear_imputation, road
from deepscope.errors import DeepscopeError


def test_centre_pixel_is_the_weighted_mean_of_its_neighbours():
    image = torch.arange(9, dtype=torch.float64).reshape(1, 1, 3, 3) ** 1.5
    removed = torch.zeros(1, 3, 3, dtype=torch.bool)
    removed[0, 1, 1] = True
    imputed = noisy_linear_imputation(image, removed)
    grid = image[0, 0]
    direct = grid[0, 1] + grid[1, 0] + grid[1, 2] + grid[2, 1]
    diagonal = grid[0, 0] + grid[0, 2] + grid[2, 0] + grid[2, 2]
    assert imputed[0, 0, 1, 1].item() == pytest.approx((direct / 6 + diagonal / 12).item(), rel=1e-12)
    keep = ~removed[0]
    torch.testing.assert_close(imputed[0, 0][keep], grid[keep])


def test_imputation_matches_an_independent_sparse_solve():
    # build the same system cell by cell with SciPy and solve it sparsely
    generator = torch.Generator().manual_seed(5)
    image = torch.rand(2, 2, 5, 6, generator=generator, dtype=torch.float64)
    removed = torch.rand(2, 5, 6, generator=generator) < 0.5
    ours = noisy_linear_imputation(image, removed)
    weights = {(0, 1): 1 / 6, (0, -1): 1 / 6, (1, 0): 1 / 6, (-1, 0): 1 / 6}
    weights.update({(1, 1): 1 / 12, (1, -1): 1 / 12, (-1, 1): 1 / 12, (-1, -1): 1 / 12})
    for b in range(2):
        for c in range(2):
            matrix, right = lil_matrix((30, 30)), np.zeros(30)
            for r in range(5):
                for q in range(6):
                    i = r * 6 + q
                    if not removed[b, r, q]:
                        matrix[i, i], right[i] = 1.0, image[b, c, r, q].item()
                        continue
                    for (dr, dq), w in weights.items():
                        if 0 <= r + dr < 5 and 0 <= q + dq < 6:
                            matrix[i, i] += w
                            matrix[i, (r + dr) * 6 + q + dq] -= w
            reference = spsolve(matrix.tocsr(), right).reshape(5, 6)
            np.testing.assert_allclose(ours[b, c].numpy(), reference, rtol=1e-10, atol=1e-12)


def test_sequence_gap_is_linearly_interpolated_and_noise_touches_only_imputed():
    x = torch.tensor([[[0.0, 5.0, 5.0, 5.0, 4.0, 7.0]]], dtype=torch.float64)
    removed = torch.tensor([[False, True, True, True, False, False]])
    torch.testing.assert_close(noisy_linear_imputation(x, removed)[0, 0, :5], torch.arange(5, dtype=torch.float64))
    noisy = noisy_linear_imputation(x, removed, noise_std=0.5, generator=torch.Generator().manual_seed(0))
    assert noisy[0, 0, 4:].tolist() == [4.0, 7.0] and not torch.allclose(
        noisy[0, 0, 1:4], torch.tensor([1.0, 2, 3], dtype=torch.float64)
    )


def test_road_separates_true_from_reversed_attributions():
    # class-0 logit = 4 * (mean of the top-left 2x2 block) - 4 * (mean of the rest); smooth images
    torch.manual_seed(0)
    weights = -torch.ones(1, 8, 8, dtype=torch.float64) * 4 / 60
    weights[0, :2, :2] = 1.0
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 2)).double()
    with torch.no_grad():
        net[1].weight.zero_()
        net[1].weight[0] = weights.reshape(-1) * 5
        net[1].bias.zero_()
    x = torch.rand(6, 1, 8, 8, dtype=torch.float64) + 2.0
    contributions = net[1].weight[0].reshape(1, 1, 8, 8) * x
    good = road(net, x, 0, attributions=contributions, fractions=(0.1, 0.3, 0.5), output="logit")
    bad = road(net, x, 0, attributions=-contributions, fractions=(0.1, 0.3, 0.5), output="logit")
    assert good.road_score > bad.road_score
    assert good.morf.shape == (6, 3) and good.model_evaluations == 1 + 2 * 3 * 6  # one-row target probe + curves


def test_road_bad_arguments(cnn_and_images):
    model, x = cnn_and_images
    with pytest.raises(DeepscopeError, match="fractions"):
        road(model, x, fractions=(0.5, 1.0))
    with pytest.raises(DeepscopeError, match="inputs"):
        road(torch.nn.Linear(4, 2), torch.rand(3, 4))
    with pytest.raises(DeepscopeError, match="removed"):
        noisy_linear_imputation(x, torch.zeros(5, 8, 7, dtype=torch.bool))
