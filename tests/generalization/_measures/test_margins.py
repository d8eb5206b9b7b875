"""Oracle: margins and output entropy computed by hand."""

import numpy as np
import pytest
import torch
from torch import nn

from deepscope import Problem
from deepscope.generalization._measures._context import build_context
from deepscope.generalization._measures.margins import margin_measures


def test_margins_and_entropy_by_hand():
    model = nn.Linear(3, 4)
    x = torch.randn(50, 3)
    y = torch.randint(0, 4, (50,))
    ctx = build_context(Problem(model, (x, y)), max_samples=None, seed=0)
    values = {m.name: m.value for m in margin_measures(ctx)}
    with torch.no_grad():
        out = model(x).double().numpy()
    margins = []
    for row, label in zip(out, y.numpy()):
        others = np.delete(row, label)
        margins.append(row[label] - others.max())
    gamma = np.quantile(margins, 0.1)  # torch.quantile and numpy both interpolate linearly
    assert values["margin_10th_percentile"] == pytest.approx(gamma, rel=1e-6)
    probabilities = np.exp(out) / np.exp(out).sum(1, keepdims=True)
    entropy = -(probabilities * np.log(probabilities)).sum(1).mean()
    assert values["output_entropy"] == pytest.approx(entropy, rel=1e-6)
    if gamma > 0:
        assert values["inverse_margin"] == pytest.approx(1 / gamma**2, rel=1e-6)
    else:
        assert np.isnan(values["inverse_margin"])
