"""The common call shape of every attribution method: target forms, inputs never modified, finiteness.

* ``target``: a Python list of ``batch`` ints means one target per example (as in Captum); several
  targets per example need a 2-D tensor or nested list; any other list length is refused.
* The caller's ``inputs`` are never modified, also by a model whose first layer works in place.
* A wrong input width gives Problem's DataError; NaN weights and NaN results are refused.
"""

import numpy as np
import pytest
import torch
from torch import nn

from deepscope import Problem
from deepscope.attribution import METHODS, integrated_gradients, saliency
from deepscope.errors import DataError, InvalidParameterError, NonFiniteError

# grad_cam needs a convolution and ism one-hot sequences; they get their own models below
TABULAR = sorted(name for name in METHODS if name not in ("grad_cam", "ism"))
# the layer methods attribute at a layer: "2" is a layer of _mlp() and of _mlp(first) alike
OPTIONS = {
    "shapley": {"samples": 4},
    "smoothgrad": {"samples": 3},
    "vargrad": {"samples": 3},
    "layer_integrated_gradients": {"layer": "2", "steps": 4},
    "layer_gradient_x_activation": {"layer": "2"},
    "attn_lrp": {"layer": "2"},
}


def _mlp(first=None):
    torch.manual_seed(0)
    layers = [first] if first is not None else []
    return nn.Sequential(*layers, nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)).eval()


def _rows(n=3):
    return torch.randn(n, 4, generator=torch.Generator().manual_seed(1))


def test_a_list_of_batch_ints_means_one_target_per_example():
    model, x = _mlp(), _rows(3)
    from_list = saliency(model, x, target=[0, 1, 2])
    from_tensor = saliency(model, x, target=torch.tensor([0, 1, 2]))
    assert from_list.values.shape == x.shape and not from_list.multi_target
    assert torch.equal(from_list.target, torch.tensor([0, 1, 2]))
    assert torch.equal(from_list.values, from_tensor.values)
    for i, cls in enumerate([0, 1, 2]):  # row i explains class i
        assert torch.allclose(from_list.values[i], saliency(model, x[i : i + 1], target=cls).values[0])


def test_a_numpy_array_of_targets_is_one_per_example():
    model, x = _mlp(), _rows(3)
    assert torch.equal(saliency(model, x, target=np.array([2, 0, 1])).target, torch.tensor([2, 0, 1]))


@pytest.mark.parametrize("target", [[0, 2], [0, 1, 2, 0], (1,)])
def test_a_list_of_another_length_is_refused_with_the_explicit_form(target):
    with pytest.raises(InvalidParameterError, match=r"list of 3 int\(s\) \(one target per example.*\[\[0\], \[2\]\]"):
        saliency(_mlp(), _rows(3), target=target)


def test_several_targets_need_a_two_dimensional_form():
    model, x = _mlp(), _rows(3)
    nested = saliency(model, x, target=[[0], [2]])
    column = saliency(model, x, target=torch.tensor([[0], [2]]))
    full = saliency(model, x, target=torch.tensor([[0, 0, 0], [2, 2, 2]]))
    assert nested.multi_target and nested.values.shape == (2, *x.shape)
    assert torch.equal(nested.values, column.values) and torch.equal(nested.values, full.values)
    assert torch.equal(nested.target, torch.tensor([[0, 0, 0], [2, 2, 2]]))
    assert torch.allclose(nested.values[1], saliency(model, x, target=2).values)
    per_example = saliency(model, x, target=[[0, 1, 2], [2, 1, 0]])
    assert torch.equal(per_example.target[1], torch.tensor([2, 1, 0]))


@pytest.mark.parametrize(
    "target, match",
    [
        ([[0], [1, 2]], "several targets per example"),
        ([[0.5], [1]], "several targets per example"),
        (torch.tensor([[0, 1]]), "several targets per example"),
        (torch.tensor([0.0, 1.0, 2.0]), "integer class indices"),
        ([0, 1, 3], r"class indices in \[0, 2\]"),
        ([[0], [-1]], r"class indices in \[0, 2\]"),
        (True, "None, an int"),
        ("0", "None, an int"),
    ],
)
def test_bad_targets_are_refused(target, match):
    with pytest.raises(InvalidParameterError, match=match):
        saliency(_mlp(), _rows(3), target=target)


def _conv_inplace():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.ReLU(inplace=True), nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(32, 3)
    ).eval()


class _DoubleInPlace(nn.Module):
    """A first layer that overwrites its input (x *= 2), as careless custom layers do."""

    def forward(self, x):
        return x.mul_(2.0)


@pytest.mark.parametrize("name", sorted(METHODS))  # every registered method, new ones included
def test_an_inplace_first_layer_never_changes_the_callers_inputs(name):
    if name == "grad_cam":
        model, x = _conv_inplace(), torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(2))
    elif name == "ism":
        torch.manual_seed(0)
        model = nn.Sequential(_DoubleInPlace(), nn.Flatten(), nn.Linear(20, 3)).eval()
        x = nn.functional.one_hot(torch.tensor([[0, 1, 2, 3, 0], [3, 2, 1, 0, 1]]), 4).permute(0, 2, 1).float()
    else:
        model, x = _mlp(nn.ReLU(inplace=True)), _rows(3)
    if name != "ism":
        assert bool((x < 0).any())  # an in-place ReLU would visibly change it
    before = x.clone()
    result = METHODS[name](model, x, target=0, **OPTIONS.get(name, {}))
    assert torch.equal(x, before)
    assert bool(torch.isfinite(result.values).all())


def test_inplace_first_layer_gives_the_same_attribution_as_out_of_place():
    x = _rows(3)
    inplace = integrated_gradients(_mlp(nn.ReLU(inplace=True)), x, target=1, steps=16)
    plain = integrated_gradients(_mlp(nn.ReLU()), x, target=1, steps=16)
    assert torch.equal(inplace.values, plain.values)


@pytest.mark.parametrize("name", TABULAR)
def test_a_wrong_input_width_gives_problems_data_error(name):
    message = r"The model cannot take the inputs of shape \(5,\) per example"
    with pytest.raises(DataError, match=message):
        METHODS[name](_mlp(), torch.randn(3, 5), target=0, **OPTIONS.get(name, {}))
    with pytest.raises(DataError, match=r"cannot take the training inputs of shape \(5,\) per example"):
        Problem(_mlp(), (torch.randn(3, 5), torch.zeros(3, dtype=torch.long)))


@pytest.mark.parametrize("name", TABULAR + ["ism"])
def test_nan_weights_are_refused_naming_the_layer(name):
    model = _mlp()
    with torch.no_grad():
        model[2].weight[1, 3] = float("nan")
    with pytest.raises(NonFiniteError, match=r"'2\.weight' \(layer '2', Linear\) has 1 of 18 values NaN"):
        METHODS[name](model, _rows(3), target=0, **OPTIONS.get(name, {}))


class _Exp(nn.Module):
    """exp of a linear map: finite weights, but the output and gradient overflow for large inputs."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 2)

    def forward(self, x):
        return torch.exp(self.linear(x))


def test_an_overflowing_model_never_returns_nan_attributions_silently():
    model = _Exp()
    x = _rows(3)
    assert bool(torch.isfinite(saliency(model, x, target=0).values).all())
    x[1] = 1e4  # exp overflows for this example only
    with pytest.raises(NonFiniteError, match=r"saliency: the attributions of 1 example\(s\) \(1\) are NaN or inf"):
        saliency(model, x, target=0)


def test_list_elements_may_be_numpy_ints_or_zero_dim_tensors():
    model, x = _mlp(), _rows(3)
    expected = saliency(model, x, target=torch.tensor([2, 0, 1])).values
    assert torch.equal(saliency(model, x, target=list(np.array([2, 0, 1]))).values, expected)
    assert torch.equal(saliency(model, x, target=list(torch.tensor([2, 0, 1]))).values, expected)
    with pytest.raises(InvalidParameterError, match="several targets per example"):
        saliency(model, x, target=[torch.tensor(0.5), 1, 2])
