"""Oracles: for a bias-free linear model ⟨w, ∇_w ℓ⟩ = ⟨∂ℓ/∂f, f⟩ = ⟨softmax(f) − e_y, f⟩; gradient
noise against a per-example autograd loop."""

import pytest
import torch
from torch import nn

from deepscope import Problem
from deepscope.generalization._measures._context import build_context
from deepscope.generalization._measures.fisher_rao import fisher_rao_norm, gradient_noise


def _setup(model, d_in):
    x = torch.randn(30, d_in)
    y = torch.randint(0, 3, (30,))
    return build_context(Problem(model, (x, y)), max_samples=None, seed=0), x, y


def test_fisher_rao_linear_closed_form():
    model = nn.Linear(4, 3, bias=False)
    ctx, x, y = _setup(model, 4)
    with torch.no_grad():
        f = model(x).double()
        inner = ((torch.softmax(f, 1) - nn.functional.one_hot(y, 3)) * f).sum(1)
    expected = (1 + 1) ** 2 * float(inner.pow(2).mean())  # d = 1 layer
    assert fisher_rao_norm(ctx) == pytest.approx(expected, rel=1e-5)  # float32 forward pass


def test_gradient_noise_matches_autograd_loop():
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3))
    ctx, x, y = _setup(model, 4)
    grads = []
    for i in range(30):
        model.zero_grad()
        nn.functional.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]).double())
    g = torch.stack(grads)
    expected = float((g - g.mean(0)).pow(2).sum(1).mean())
    value, n = gradient_noise(ctx)
    assert n == 30
    assert value == pytest.approx(expected, rel=1e-5)
    # its stated standard error: the spread of the per-example squared gradient norms / √n
    spread = float(g.pow(2).sum(1).std()) / 30**0.5
    assert ctx.cache["gradient_noise_error"] == pytest.approx(spread, rel=1e-5)


def test_per_example_gradients_one_at_a_time_and_jvp_chunks_under_the_memory_budget(monkeypatch):
    """The gradient noise takes one example per backward pass (one gradient held at a time); the
    Fisher-Rao jvp chunks are sized by the memory budget: with a budget that fits one example
    they hold one example each and give the same norm (float32 jvp sums in another order: 1e-6)."""
    from deepscope.generalization._measures import _cost

    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3))
    ctx, _, _ = _setup(model, 4)
    whole = fisher_rao_norm(ctx, chunk=30)
    sizes = []
    original = ctx.chunks

    def recording(size, stop=None):
        sizes.append(size)
        return original(size, stop)

    monkeypatch.setattr(ctx, "chunks", recording)
    monkeypatch.setattr(_cost, "MEMORY_BUDGET", 1)
    _, n = gradient_noise(ctx)
    assert fisher_rao_norm(ctx) == pytest.approx(whole, rel=1e-6)
    assert sizes == [1, 1] and n == 30
    assert ctx.forward_passes == 30 + 30 + 30 and ctx.backward_passes == 90  # 2 jvps + 30 gradients


def test_example_gradient_seconds_is_a_positive_time_counted_as_two_passes():
    from deepscope.generalization._measures.fisher_rao import example_gradient_seconds

    ctx, _, _ = _setup(nn.Linear(4, 3), 4)
    assert 0 < example_gradient_seconds(ctx) < 60
    assert (ctx.forward_passes, ctx.backward_passes) == (2, 2)
