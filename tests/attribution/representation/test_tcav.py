import warnings

import pytest
import torch
from scipy.stats import ttest_ind

from deepscope.attribution.representation import layer_gradients, tcav
from deepscope.errors import DeepscopeError


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(5, 6), torch.nn.Tanh(), torch.nn.Linear(6, 2)).double()


def test_layer_gradients_match_the_chain_rule_by_hand():
    net = _net()
    x = torch.randn(7, 5, dtype=torch.float64)
    gradients = layer_gradients(net, x, "1", target=1)
    # after the Tanh the network is linear: d logit_1 / d a = W2[1] for every input
    torch.testing.assert_close(gradients, net[2].weight[1].detach().expand(7, 6))
    pre = layer_gradients(net, x, "0", target=1)
    expected = net[2].weight[1].detach() * (1 - torch.tanh(net[0](x)).detach() ** 2)
    torch.testing.assert_close(pre, expected)
    assert not net[1]._forward_hooks  # hook removed


def test_a_concept_along_the_class_direction_is_significant():
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2)).double()
    generator = torch.Generator().manual_seed(0)
    # before the ReLU the gradient of logit 1 is W2[1] ⊙ 1[active]: its dot product with sign(W2[1])
    # is Σ_active |W2[1]_j| > 0 for every input, so sign(W2[1]) is a true concept direction (TCAV score 1)
    direction = net[2].weight[1].detach().sign()
    randoms = [torch.randn(40, 5, generator=generator, dtype=torch.float64) for _ in range(10)]
    inputs = torch.randn(30, 5, generator=generator, dtype=torch.float64)
    pre_image = torch.linalg.lstsq(net[0].weight.detach(), (3 * direction - net[0].bias.detach()).unsqueeze(1))
    concept = pre_image.solution.t() + 0.05 * torch.randn(40, 5, generator=generator, dtype=torch.float64)
    result = tcav(net, inputs, concept, randoms, layer="0", target=1)
    assert result.mean_score == 1.0 and result.significant, result.random_scores
    # the p-value is SciPy's two-sided Welch test on the two score samples
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the concept sample is constant
        expected = ttest_ind(result.concept_scores.numpy(), result.random_scores.numpy(), equal_var=False).pvalue
    assert result.p_value == pytest.approx(float(expected), rel=1e-12)
    assert (result.cav_accuracy == 1.0).all()
    opposite = tcav(net, inputs, -concept, randoms, layer="0", target=1)
    assert opposite.mean_score == 0.0 and opposite.significant


def test_a_random_concept_is_not_significant_and_scores_match_a_direct_count():
    torch.manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)).double()
    generator = torch.Generator().manual_seed(4)
    draw = lambda n: torch.randn(n, 4, generator=generator, dtype=torch.float64)  # noqa: E731
    randoms = [draw(40) for _ in range(10)]
    inputs = draw(25)
    concept = draw(40)
    result = tcav(net, inputs, concept, randoms, layer="1", target=2)
    assert result.concept_scores.shape == (10,) and 0.0 <= result.mean_score <= 1.0
    assert result.p_value > 0.01  # the concept is drawn like the random sets
    # recompute the first concept score from its CAV by hand
    from deepscope.attribution.representation.tcav import _train_cav

    act = lambda t: torch.relu(net[0](t)).detach().numpy()  # noqa: E731
    direction, _ = _train_cav(act(concept), act(randoms[0]), 0)
    gradients = layer_gradients(net, inputs, "1", target=2).numpy()
    assert result.concept_scores[0].item() == pytest.approx(float((gradients @ direction > 0).mean()))


def test_tcav_validation():
    net = _net()
    x = torch.randn(4, 5, dtype=torch.float64)
    with pytest.raises(DeepscopeError, match="random_sets"):
        tcav(net, x, x, [x], layer="1", target=0)
    with pytest.raises(DeepscopeError, match="layer"):
        tcav(net, x, x, [x, x], layer="9", target=0)
    with pytest.raises(DeepscopeError, match="target"):
        tcav(net, x, x, [x, x], layer="1", target=5)


def test_a_seed_beyond_scikit_learns_range_is_taken():
    """deepscope's seeds are any int >= 0; scikit-learn's LogisticRegression refused those >= 2**32 with its own error."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    x = torch.randn(8, 3)
    big = tcav(net, x, x + 1, [torch.randn(8, 3), torch.randn(8, 3)], layer="1", target=0, seed=2**40 + 7)
    same = tcav(net, x, x + 1, [torch.randn(8, 3), torch.randn(8, 3)], layer="1", target=0, seed=7)
    assert big.cav_accuracy.shape == same.cav_accuracy.shape
