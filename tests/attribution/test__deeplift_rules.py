"""DeepLIFT's rules on B inputs × n references: softmax (against tangermeme's rule), logsumexp and
log-softmax (exact decompositions), global max (against max pooling), products, broadcasting."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from deepscope.attribution import deeplift


def _one_hot(batch: int, length: int, seed: int) -> torch.Tensor:
    codes = torch.randint(0, 4, (batch, length), generator=torch.Generator().manual_seed(seed))
    return F.one_hot(codes, 4).permute(0, 2, 1).double()


class _Head(nn.Module):
    """Conv → ReLU → flatten → linear → a normaliser over the classes → linear."""

    def __init__(self, kind: str, length: int = 12):
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.first, self.last, self.kind = (
            nn.Conv1d(4, 3, 5),
            nn.Linear(3 * (length - 4), 6),
            nn.Linear(6, 2),
            kind,
        )
        self.softmax, self.relu = nn.Softmax(dim=1), nn.ReLU()  # modules: tangermeme hooks modules only
        self.double()

    def forward(self, x):
        h = self.first(self.relu(self.conv(x)).flatten(1))
        if self.kind == "softmax_module":
            return self.last(self.softmax(h))
        if self.kind == "softmax":
            return self.last(F.softmax(h, dim=-1))
        if self.kind == "log_softmax":
            return self.last(torch.log_softmax(h, 1))
        if self.kind == "logsumexp":
            return torch.cat([torch.logsumexp(h, dim=1, keepdim=True), h.logsumexp(1).unsqueeze(1)], 1)
        return self.last(torch.exp(h / 4).log1p())  # element-wise exp and log1p


@pytest.mark.parametrize("kind", ["softmax_module", "softmax", "log_softmax", "logsumexp", "elementwise"])
def test_normalisers_and_elementwise_steps_sum_to_delta(kind):
    x, baseline = _one_hot(5, 12, 0), _one_hot(5, 12, 1)
    got = deeplift(_Head(kind), x, target=[[0], [1]], baseline=baseline)
    # exact decompositions: only float64 rounding remains (the 1e-6 ratio guards are second order)
    assert got.diagnostics["completeness_error"].max() < 1e-9


def test_softmax_matches_tangermemes_rule():
    from tangermeme.deep_lift_shap import deep_lift_shap

    x, references = _one_hot(4, 12, 2), _one_hot(12, 12, 3).view(4, 3, 4, 12)
    model = _Head("softmax_module")
    multipliers = deep_lift_shap(model, x, target=1, references=references, raw_outputs=True, device="cpu")
    for k in range(3):
        ours = deeplift(model, x, target=1, baseline=references[:, k]).values
        # the same decomposition (a = exp(z − c), s = Σa, y = a/s, log-ratio rule): float64 rounding only
        torch.testing.assert_close(ours, (x - references[:, k]) * multipliers[:, k], rtol=1e-7, atol=1e-10)


def test_logsumexp_multiplier_by_hand():
    """One layer, y = logsumexp(z): m_j = (ΔL/Δs)·(Δa_j/Δz_j), a = exp(z), s = Σa."""

    class LSE(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones((), dtype=torch.float64))

        def forward(self, z):
            return torch.logsumexp(z * self.scale, dim=1, keepdim=True)

    z = torch.tensor([[0.3, -1.2, 2.0]], dtype=torch.float64)
    ref = torch.tensor([[1.0, 0.5, -0.5]], dtype=torch.float64)
    a, a_ref = z.exp(), ref.exp()
    log_ratio = (a.sum().log() - a_ref.sum().log()) / (a.sum() - a_ref.sum())
    want = log_ratio * (a - a_ref) / (z - ref) * (z - ref)
    got = deeplift(LSE(), z, target=0, baseline=ref).values
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)


class _GlobalMax(nn.Module):
    def __init__(self, kind: str):
        super().__init__()
        torch.manual_seed(1)
        self.conv, self.linear, self.kind = nn.Conv1d(4, 5, 3), nn.Linear(5, 2), kind
        self.pools = nn.ModuleDict({"maxpool": nn.MaxPool1d(10), "adaptive": nn.AdaptiveMaxPool1d(1)})
        self.double()

    def forward(self, x):
        h = torch.relu(self.conv(x))
        if self.kind in self.pools:
            h = self.pools[self.kind](h).squeeze(2)
        elif self.kind == "amax":
            h = torch.amax(h, dim=-1)
        elif self.kind == "max":
            h = h.max(dim=2).values
        else:
            h = torch.max(h, 2, True)[0].flatten(1)
        return self.linear(h)


@pytest.mark.parametrize("kind", ["adaptive", "amax", "max", "max_tuple"])
def test_global_max_equals_the_max_pool_over_the_whole_length(kind):
    x, baseline = _one_hot(6, 12, 4), _one_hot(6, 12, 5)
    want = deeplift(_GlobalMax("maxpool"), x, target=0, baseline=baseline)  # max pooling: Captum's rule (tested)
    got = deeplift(_GlobalMax(kind), x, target=0, baseline=baseline)
    torch.testing.assert_close(got.values, want.values, rtol=1e-12, atol=1e-14)
    assert got.diagnostics["completeness_error"].max() < 1e-10


def test_matmul_of_two_activations_sums_to_delta(mlp_and_rows):
    _, rows = mlp_and_rows

    class Outer(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(2)
            self.a, self.b = nn.Linear(5, 3).double(), nn.Linear(5, 3).double()

        def forward(self, x):
            return torch.matmul(self.a(x).unsqueeze(2), torch.tanh(self.b(x)).unsqueeze(1)).flatten(1)

    got = deeplift(Outer(), rows, target=[[0], [4], [8]], baseline=torch.randn_like(rows))
    assert got.diagnostics["completeness_error"].max() < 1e-10  # the midpoint rule is exact for bilinear maps


@pytest.mark.parametrize("coincide", [False, True])
def test_piecewise_linear_rescale_takes_the_secant_and_the_derivative_where_the_input_and_reference_coincide(
    coincide,
):
    from deepscope.attribution._deeplift_rules import EXACT, Rescale

    z_x = torch.tensor([[-2.0, -1.0, 0.5, 3.0, 1.0, -0.5]], dtype=torch.float64)  # one input
    z_r = torch.tensor([[-1.0, 2.0, 1.5, -1.0, 1.0, -0.5]], dtype=torch.float64).repeat(2, 1)  # two references
    if not coincide:
        z_r[:, 4:] = torch.tensor([-3.0, -2.0], dtype=torch.float64)
    z_r[1, 0] = 4.0
    leaf = z_r.clone().requires_grad_(True)
    output = Rescale.apply(leaf, z_x, torch.relu(z_x), torch.relu, EXACT, True)
    (multiplier,) = torch.autograd.grad(output, leaf, torch.full_like(z_r, 2.0))
    # by hand: (relu(z_x) − relu(z_r)) / (z_x − z_r) times the upstream 2; where z_x = z_r, relu'(z_x) times 2
    secant = (torch.relu(z_x) - torch.relu(z_r)) / (z_x - z_r)
    expected = 2.0 * torch.where(z_x == z_r, (z_x > 0).double(), secant)
    assert not expected.isnan().any()
    torch.testing.assert_close(multiplier, expected, rtol=0, atol=1e-15)
    assert bool((multiplier[:, 4] == 2.0).all()) == coincide  # relu'(1) where they coincide, else (1 − 0)/(1 + 3)·2
