import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from deepscope.attribution.representation import linear_probes
from deepscope.errors import DeepscopeError


def _identity_then_erase():
    net = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.ReLU(), torch.nn.Linear(3, 3))
    with torch.no_grad():
        net[0].weight.copy_(torch.eye(3))
        net[0].bias.fill_(10.0)  # keeps ReLU in its linear part for |x| < 10
        net[2].weight.zero_()  # erases everything: constant output
        net[2].bias.zero_()
    return net


def test_probe_accuracy_is_one_where_the_label_is_linear_and_chance_where_it_is_erased():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(200, 3, generator=generator)
    labels = (x[:, 0] - x[:, 2] > 0).long()
    result = linear_probes(_identity_then_erase(), x, labels, test_fraction=0.25)
    assert result.layers == ["input", "0", "1", "2"]
    assert result.test_accuracy[0] >= 0.96 and result.test_accuracy[2] >= 0.96  # separable (finite-C margin)
    # the erased layer carries no information: the probe predicts one class, the majority rate at best
    assert result.test_accuracy[3] <= result.chance + 1e-12
    assert result.n_train == 150 and result.n_test == 50


def test_probe_matches_a_direct_scikit_learn_fit_on_the_same_split():
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(120, 4, generator=generator)
    labels = ((x[:, 0] * x[:, 1]) > 0).long() + (x[:, 2] > 1).long()
    net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh())
    result = linear_probes(net, x, labels, layers=["1"], include_input=False, seed=5)
    order = torch.randperm(120, generator=torch.Generator().manual_seed(5))
    test, train = order[:36].numpy(), order[36:].numpy()
    with torch.no_grad():
        features = net(x).double().numpy()
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(features[train], labels[train])
    expected = float((probe.predict(features[test]) == labels.numpy()[test]).mean())
    assert result.test_accuracy == [pytest.approx(expected, abs=1e-12)]
    assert result.chance == pytest.approx(np.bincount(labels.numpy()[test]).max() / 36)


def test_probe_validation():
    net = torch.nn.Sequential(torch.nn.Linear(2, 2))
    with pytest.raises(DeepscopeError, match="labels"):
        linear_probes(net, torch.randn(10, 2), torch.rand(10))
    with pytest.raises(DeepscopeError, match="test_fraction"):
        linear_probes(net, torch.randn(10, 2), torch.zeros(10, dtype=torch.long), test_fraction=1.5)
    with pytest.raises(DeepscopeError):
        linear_probes(net, torch.full((10, 2), float("nan")), torch.zeros(10, dtype=torch.long))
