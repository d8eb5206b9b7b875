"""Oracles: norms, path norm and the Bartlett/Neyshabur measures computed by hand on tiny nets."""

import itertools
import math

import pytest
import torch
from torch import nn

from deepscope import Problem
from deepscope.generalization._measures._context import build_context
from deepscope.generalization._measures.norms import norm_measures, path_norm


def _problem(model, d_in=3, n=40, init=None):
    x = torch.randn(n, d_in)
    with torch.no_grad():
        y = model(x).argmax(1)
    return Problem(model, (x, y), init_state=init)


def _values(problem):
    ctx = build_context(problem, max_samples=None, seed=0)
    return {m.name: m.value for m in norm_measures(ctx)}, ctx


def test_linear_path_norm_is_sum_of_squares():
    model = nn.Linear(4, 3, bias=False)
    ctx = build_context(_problem(model, d_in=4), max_samples=None, seed=0)
    assert path_norm(ctx) == pytest.approx(float(model.weight.detach().pow(2).sum()), rel=1e-6)


def test_relu_path_norm_enumerates_paths():
    model = nn.Sequential(nn.Linear(2, 3, bias=False), nn.ReLU(), nn.Linear(3, 2, bias=False))
    w1, w2 = model[0].weight.detach(), model[2].weight.detach()
    by_hand = sum(float(w2[k, j] ** 2 * w1[j, i] ** 2) for i, j, k in itertools.product(range(2), range(3), range(2)))
    ctx = build_context(_problem(model, d_in=2), max_samples=None, seed=0)
    assert path_norm(ctx) == pytest.approx(by_hand, rel=1e-5)  # float32 forward pass


def test_norm_products_and_distances_by_hand():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 4))
    init = {k: v.detach() + 0.1 * torch.randn_like(v) for k, v in model.state_dict().items()}
    values, ctx = _values(_problem(model, init=init))
    weights = [model[0].weight.detach().double(), model[2].weight.detach().double()]
    starts = [init["0.weight"].double(), init["2.weight"].double()]
    spec = [float(torch.linalg.matrix_norm(w, ord=2)) for w in weights]
    fro = [float(w.pow(2).sum()) for w in weights]
    gamma = ctx.margin()
    assert values["log_product_spectral"] == pytest.approx(sum(math.log(s**2) for s in spec), rel=1e-5)
    assert values["log_product_frobenius"] == pytest.approx(sum(math.log(f) for f in fro), rel=1e-5)
    assert values["log_sum_frobenius"] == pytest.approx(math.log(2 * math.sqrt(fro[0] * fro[1])), rel=1e-5)
    assert values["log_product_spectral_over_margin"] == pytest.approx(
        sum(math.log(s**2) for s in spec) - 2 * math.log(gamma), rel=1e-5
    )
    diffs = [w - s for w, s in zip(weights, starts)]
    assert values["frobenius_distance"] == pytest.approx(sum(float(d.pow(2).sum()) for d in diffs), rel=1e-5)
    assert values["spectral_distance"] == pytest.approx(
        sum(float(torch.linalg.matrix_norm(d, ord=2)) ** 2 for d in diffs), rel=1e-5
    )
    l21 = [float(w.norm(dim=1).sum()) for w in weights]
    bartlett = math.log(spec[0] * spec[1] * sum((a / s) ** (2 / 3) for a, s in zip(l21, spec)) ** 1.5 / gamma)
    assert values["spectral_margin_orig"] == pytest.approx(bartlett, rel=1e-5)
    neyshabur = math.log(
        spec[0] ** 2 * spec[1] ** 2 * sum(float(d.pow(2).sum()) / s**2 for d, s in zip(diffs, spec)) / gamma**2
    )
    assert values["pac_bayes_spectral_init"] == pytest.approx(neyshabur, rel=1e-5)
    assert values["parameter_count"] == sum(p.numel() for p in model.parameters())


def test_distances_are_nan_without_init():
    values, _ = _values(_problem(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))))
    assert math.isnan(values["frobenius_distance"]) and math.isfinite(values["log_product_spectral"])


def test_conv_spectral_norms_are_the_operators_and_an_unconverged_one_is_noted(monkeypatch):
    import deepscope.generalization._measures.norms as norms

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 5 * 5, 2))
    x = torch.randn(20, 1, 5, 5)
    with torch.no_grad():
        problem = Problem(model, (x, model(x).argmax(1)))
    ctx = build_context(problem, max_samples=None, seed=0)
    measures = {m.name: m for m in norm_measures(ctx)}
    basis = torch.eye(25, dtype=torch.float64).reshape(25, 1, 5, 5)  # the conv's dense matrix, column by column
    with torch.no_grad():
        dense = model[0]._conv_forward(basis, model[0].weight.double(), None).reshape(25, -1).T
    spec = [float(torch.linalg.matrix_norm(dense, ord=2)), float(torch.linalg.matrix_norm(model[3].weight, ord=2))]
    # σ of the conv within 5e-7 (Lanczos at tolerance 1e-6); the Linear's SVD in float32
    assert measures["log_product_spectral"].value == pytest.approx(sum(math.log(s**2) for s in spec), abs=1e-5)
    assert all("not converged" not in m.note for m in measures.values())
    original = norms.layer_spectral_norm
    monkeypatch.setattr(norms, "layer_spectral_norm", lambda layer: original(layer, iterations=2))
    capped = {m.name: m for m in norm_measures(build_context(problem, max_samples=None, seed=0))}
    assert "conv spectral norm not converged: 0 (within" in capped["log_product_spectral"].note
    assert "not converged" in capped["spectral_margin_orig"].note
    assert "not converged" not in capped["log_product_frobenius"].note
