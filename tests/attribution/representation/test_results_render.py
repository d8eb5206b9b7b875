"""Representation results serialise to strict JSON and draw figures without a window."""

import json

import torch
from matplotlib.figure import Figure

from deepscope.attribution.representation import layer_cka, linear_probes, tcav


def test_representation_results_serialise_and_draw():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 6), torch.nn.ReLU(), torch.nn.Linear(6, 2))
    x = torch.randn(40, 3)
    results = [
        linear_probes(net, x, (x[:, 0] > 0).long()),
        layer_cka(net, x, kernel="rbf"),
        tcav(net, x[:10], x[10:20] + 2, [x[20:30], x[30:40]], layer="0", target=1),
    ]
    for result in results:
        assert json.loads(result.to_json())["type"] == type(result).__name__
        assert result.rows()
        assert isinstance(result.plot(), Figure)
