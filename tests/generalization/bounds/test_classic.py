"""Classic bounds recomputed by hand from their formulas on a small trained ReLU network."""

import math

import pytest
import torch
from torch import nn

from deepscope import Problem
from deepscope.errors import InvalidParameterError
from deepscope.generalization.bounds.classic import classic_bounds


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    x = torch.randn(400, 2)
    y = (x[:, 0] > 0).long()
    model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(200):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model, x, y


def test_bounds_match_their_formulas(trained):
    model, x, y = trained
    result = classic_bounds(Problem(model, (x, y)), delta=0.05)
    rows = {b.name: b for b in result.bounds}
    n = 400
    with torch.no_grad():
        out = model(x).double()
    margins = out.gather(1, y[:, None]).squeeze(1) - out.scatter(1, y[:, None], -math.inf).max(1).values
    gamma = float(torch.quantile(margins, 0.1))
    assert result.margin == pytest.approx(gamma) and gamma > 0
    weights = [model[0].weight.detach().double(), model[2].weight.detach().double()]
    spec = [float(torch.linalg.matrix_norm(w, ord=2)) for w in weights]
    l21 = [float(w.norm(dim=1).sum()) for w in weights]
    r = spec[0] * spec[1] * sum((a / s) ** (2 / 3) for a, s in zip(l21, spec)) ** 1.5
    x_norm = float(x.double().pow(2).sum().sqrt())
    margin_loss = float((margins <= gamma).double().mean())
    expected = margin_loss + 8 / n + 72 * x_norm * r * math.log(2 * 8) * math.log(n) / (gamma * n)
    expected += 3 * math.sqrt(math.log(1 / 0.05) / (2 * n))
    assert rows["spectral_margin"].value == pytest.approx(expected, rel=1e-5)
    assert rows["spectral_margin"].vacuous == (expected > 1)
    omega = sum(p.numel() for p in model.parameters())
    d_vc = omega * 2 * math.log2(omega)
    assert f"{d_vc:.3g}" in rows["vc_relu"].note
    for bound in result.bounds:
        assert bound.value == pytest.approx(bound.training_term + bound.complexity_term)
        assert bound.times_above_one == bound.value


def test_monotone_in_delta(trained):
    model, x, y = trained
    loose = {b.name: b.value for b in classic_bounds(Problem(model, (x, y)), delta=0.01).bounds}
    tight = {b.name: b.value for b in classic_bounds(Problem(model, (x, y)), delta=0.2).bounds}
    assert all(loose[name] > tight[name] for name in loose if name != "vc_relu")
    assert loose["vc_relu"] >= tight["vc_relu"]  # here D >= n, where the reported leading term has no delta


def test_bad_delta(trained):
    model, x, y = trained
    with pytest.raises(InvalidParameterError, match="delta"):
        classic_bounds(Problem(model, (x, y)), delta=0.0)


class _Named(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x, mask):
        return {"logits": self.net(x * mask)}


def test_named_inputs_leave_the_input_norm_bounds_undefined_and_the_vc_bound_equal(trained):
    # the three margin bounds read ‖x‖; named inputs have no one norm: NaN with a note saying so, while the
    # VC bound (no input term) equals the plain network's exactly (same weights, same function)
    model, x, y = trained
    plain = {b.name: b for b in classic_bounds(Problem(model, (x, y))).bounds}
    named = _Named(model)
    inputs = {"x": x, "mask": torch.ones(x.shape, dtype=torch.long)}
    result = classic_bounds(Problem(named, (inputs, y), output_fn=lambda out: out["logits"]))
    rows = {b.name: b for b in result.bounds}
    for name in ("spectral_margin", "pac_bayes_spectral", "path_norm"):
        assert math.isnan(rows[name].value) and "needs float tensor inputs" in rows[name].note
    assert rows["vc_relu"].value == plain["vc_relu"].value
    assert result.n == 400


def test_token_ids_have_no_input_norm():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(5, 3), nn.Flatten(), nn.Linear(6, 2))
    ids = torch.randint(0, 5, (40, 2))
    with torch.no_grad():
        labels = model(ids).argmax(1)  # its own predictions: every margin > 0, so the margin bounds are attempted
    result = classic_bounds(Problem(model, (ids, labels)))
    rows = {b.name: b for b in result.bounds}
    assert result.margin > 0
    for name in ("spectral_margin", "pac_bayes_spectral", "path_norm"):
        assert math.isnan(rows[name].value) and "needs float tensor inputs" in rows[name].note
    assert math.isfinite(rows["vc_relu"].value)
