"""Oracle: folding BatchNorm must leave the network's function unchanged (to 1e-6 in float64)."""

import pytest
import torch
from torch import nn

from deepscope.generalization._measures._folding import discover_layers, fold_layers, folded_state


def _trained_bn(model, x):
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(x + 0.3 * torch.randn_like(x))
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                module.weight.uniform_(0.5, 2.0)
                module.bias.uniform_(-1.0, 1.0)
    return model.eval()


@pytest.mark.parametrize(
    "model,shape",
    [
        (
            nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(48, 2)),
            (1, 4, 4),
        ),
        (
            nn.Sequential(
                nn.Linear(5, 6, bias=False), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3), nn.BatchNorm1d(3)
            ),
            (5,),
        ),
    ],
)
def test_folding_leaves_outputs_unchanged(model, shape):
    model = model.double()
    x = torch.randn(16, *shape, dtype=torch.float64)
    model = _trained_bn(model, x)
    structure = discover_layers(model, x[:2])
    assert all(layer.batchnorm is not None for layer in structure.layers[:1])
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}
    folded = fold_layers(structure, params, buffers)
    new_params, new_buffers = folded_state(structure, folded, params, buffers)
    with torch.no_grad():
        expected = model(x)
        got = torch.func.functional_call(model, (new_params, new_buffers), (x,))
    assert torch.allclose(got, expected, atol=1e-6, rtol=0)  # float64: only rounding differs


def test_folded_weight_formula():
    linear, bn = nn.Linear(3, 2), nn.BatchNorm1d(2)
    model = _trained_bn(nn.Sequential(linear, bn), torch.randn(8, 3))
    structure = discover_layers(model, torch.randn(2, 3))
    params = dict(model.named_parameters())
    folded = fold_layers(structure, params, dict(model.named_buffers()))[0]
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    assert torch.allclose(folded.weight, linear.weight * scale[:, None])
    assert torch.allclose(folded.bias, (linear.bias - bn.running_mean) * scale + bn.bias)


def test_unsupported_layers_are_listed():
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.Tanh(), nn.BatchNorm1d(4), nn.Linear(4, 2)).eval()
    structure = discover_layers(model, torch.randn(2, 4))
    assert [layer.name for layer in structure.layers] == ["0", "4"]
    assert any("LayerNorm" in entry for entry in structure.unsupported)
    assert any("BatchNorm1d" in entry for entry in structure.unsupported)  # not directly after a Linear
    assert structure.non_homogeneous == ["2 (Tanh)"]


def test_container_parameters_are_listed():
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(3, 2)
            self.scale = nn.Parameter(torch.ones(2))

        def forward(self, x):
            return self.linear(x) * self.scale

    structure = discover_layers(Scaled().eval(), torch.randn(2, 3))
    assert [layer.name for layer in structure.layers] == ["linear"]
    assert structure.unsupported == ["scale (parameter of a container module)"]
