import math

import pytest
import torch
from torch import nn

from deepscope.curvature.ntk import ntk
from deepscope.errors import InvalidParameterError, UnsupportedModelError


def test_linear_model_kernel_is_xxt():
    x = torch.randn(7, 4, dtype=torch.float64)
    model = nn.Linear(4, 3, bias=False).double()
    # f_a(x) = w_aᵀx, so ∂f_a/∂w_b = δ_ab x: the full kernel is XXᵀ ⊗ I and the trace kernel XXᵀ
    trace = ntk(model, x)
    torch.testing.assert_close(trace.kernel, x @ x.T, atol=1e-12, rtol=1e-12)
    full = ntk(model, x, mode="full")
    torch.testing.assert_close(full.kernel, torch.kron(x @ x.T, torch.eye(3, dtype=torch.float64)), atol=1e-12, rtol=0)
    with_bias = ntk(nn.Linear(4, 1).double(), x)
    torch.testing.assert_close(with_bias.kernel, x @ x.T + 1, atol=1e-12, rtol=1e-12)


def test_jacobian_and_product_methods_agree():
    torch.manual_seed(0)
    x = torch.randn(6, 5, dtype=torch.float64)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    by_jacobian = ntk(model, x, mode="full", method="jacobian")
    by_products = ntk(model, x, mode="full", method="products", chunk_size=5)
    by_loop = ntk(model, x, mode="full", method="loop")
    torch.testing.assert_close(by_jacobian.kernel, by_loop.kernel, atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(by_jacobian.kernel, by_products.kernel, atol=1e-12, rtol=1e-10)
    assert ntk(model, x, memory_budget_mb=1e-9).method == "products"


class TwoLayerReLU(nn.Module):
    """f(x) = aᵀ relu(Wx) / √m with standard normal W, a (the NTK parameterisation)."""

    def __init__(self, d: int, width: int):
        super().__init__()
        self.w = nn.Parameter(torch.randn(width, d, dtype=torch.float64))
        self.a = nn.Parameter(torch.randn(width, dtype=torch.float64))

    def forward(self, x):
        return (torch.relu(x @ self.w.T) @ self.a / math.sqrt(self.a.numel()))[:, None]


def arc_cosine_ntk(x: torch.Tensor) -> torch.Tensor:
    """Infinite-width NTK of TwoLayerReLU: E[relu relu] + xᵀx' E[1·1] (Cho & Saul, 2009; Jacot et al., 2018)."""
    norms = x.norm(dim=1)
    cosine = (x @ x.T / torch.outer(norms, norms)).clamp(-1, 1)
    angle = torch.arccos(cosine)
    first = torch.outer(norms, norms) * (torch.sin(angle) + (math.pi - angle) * cosine) / (2 * math.pi)
    return first + (x @ x.T) * (math.pi - angle) / (2 * math.pi)


def test_wide_relu_net_approaches_the_arc_cosine_kernel():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(8, 3, generator=generator, dtype=torch.float64)
    exact = arc_cosine_ntk(x)
    errors = []
    for width in (64, 16384):
        torch.manual_seed(1)
        kernel = ntk(TwoLayerReLU(3, width), x).kernel
        errors.append(float((kernel - exact).norm() / exact.norm()))
    # Monte Carlo over m units: the relative error shrinks like 1/√m (≈ 0.1 at m=64, ≈ 0.008 at 16384)
    assert errors[1] < errors[0] / 4
    assert errors[1] < 0.03


def test_label_alignment_and_arora_measure():
    x = torch.randn(6, 6, dtype=torch.float64)
    y = torch.randn(6, dtype=torch.float64)
    result = ntk(nn.Linear(6, 1, bias=False).double(), x, y)
    expected = float(y @ torch.linalg.solve(x @ x.T, y))
    # K = XXᵀ is well conditioned here (square Gaussian X): no ridge, direct solve as oracle
    assert result.ridge == 0.0
    assert result.label_alignment == pytest.approx(expected, rel=1e-8)
    assert result.generalization_measure == pytest.approx(math.sqrt(expected / 6), rel=1e-8)
    assert result.condition_number == pytest.approx(float(torch.linalg.cond(x @ x.T)), rel=1e-8)


def test_class_labels_are_one_hot_and_singular_kernels_get_a_ridge():
    x = torch.randn(10, 2, dtype=torch.float64)  # rank-2 kernel on 10 points: singular
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    result = ntk(nn.Linear(2, 3, bias=False).double(), x, labels)
    assert result.ridge > 0 and result.condition_number > 1e8
    assert result.label_alignment > 0 and result.plot() is not None and result.rows()[0]["n_inputs"] == 10


def test_bad_inputs():
    with pytest.raises(UnsupportedModelError):
        ntk(nn.Linear(2, 2).requires_grad_(False), torch.randn(3, 2))
    with pytest.raises(InvalidParameterError, match="'mode' parameter of ntk"):
        ntk(nn.Linear(2, 2), torch.randn(3, 2), mode="diagonal")


def test_sketched_kernel_is_unbiased_with_an_exact_diagonal_and_its_stated_error():
    # oracle: the exact kernel by Jacobian contraction on the same network
    torch.manual_seed(0)
    x = torch.randn(6, 5, dtype=torch.float64)
    model = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 3)).double()  # 147 parameters
    for mode in ("trace", "full"):
        exact = ntk(model, x, mode=mode, method="jacobian")
        sketched = ntk(model, x, mode=mode, method="sketch", sketch_size=64, seed=1)
        assert sketched.method == "sketch" and sketched.sketch_size == 64 and exact.eigenvalue_error is None
        # the diagonal is the exact squared gradient norm (up to float64 summation order)
        torch.testing.assert_close(sketched.kernel.diagonal(), exact.kernel.diagonal(), atol=1e-10, rtol=1e-10)
        # Weyl: |λ̂_k − λ_k| <= ‖K̂ − K‖_F, whose RMS the result bounds; 3 x the RMS bound fails with
        # probability <= 1/9 by Markov on the square, far less in practice (the bound is loose)
        error = float(torch.linalg.matrix_norm(sketched.kernel - exact.kernel))
        assert error <= 3 * sketched.eigenvalue_error
        gaps = [abs(a - b) for a, b in zip(sketched.eigenvalues, exact.eigenvalues)]
        assert max(gaps) <= error + 1e-9
    # unbiased: the mean over 80 hashes approaches the exact kernel (each off-diagonal entry's
    # standard deviation is <= √(2/m)·√(K_ii K_jj); averaging 80 divides it by √80 ≈ 9)
    exact = ntk(model, x, method="jacobian").kernel
    mean = sum(ntk(model, x, method="sketch", sketch_size=16, seed=s).kernel for s in range(80)) / 80
    scale = torch.outer(exact.diagonal(), exact.diagonal()).sqrt() * math.sqrt(2 / 16) / math.sqrt(80)
    assert bool(((mean - exact).abs() <= 4 * scale + 1e-12).all())


def test_sketch_with_more_buckets_than_parameters_stays_close():
    # with m >> P collisions are rare: the error bound shrinks as 1/√m and the estimate follows it
    torch.manual_seed(1)
    x = torch.randn(5, 4, dtype=torch.float64)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2)).double()
    exact = ntk(model, x, method="loop")
    small = ntk(model, x, method="sketch", sketch_size=8)
    large = ntk(model, x, method="sketch", sketch_size=8192)
    assert large.eigenvalue_error == pytest.approx(small.eigenvalue_error / 32)  # √(8192/8) = 32
    assert float(torch.linalg.matrix_norm(large.kernel - exact.kernel)) <= 3 * large.eigenvalue_error
    with pytest.raises(InvalidParameterError, match="sketch_size"):
        ntk(model, x, method="sketch", sketch_size=0)


def test_dict_and_token_inputs_flow_through_unchanged():
    # oracle: the same kernel from the tensor call of an equivalent model
    torch.manual_seed(2)

    class Keyword(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(11, 4)
            self.head = nn.Linear(4, 3)

        def forward(self, input_ids, attention_mask):
            hidden = (self.embed(input_ids) * attention_mask[..., None]).sum(1)
            return self.head(torch.tanh(hidden))

    class Plain(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, ids):
            return self.inner(ids, torch.ones_like(ids, dtype=torch.float32))

    model = Keyword()
    ids = torch.randint(0, 11, (5, 7))
    batch = {"input_ids": ids, "attention_mask": torch.ones(5, 7)}
    for method in ("loop", "jacobian", "sketch"):
        by_dict = ntk(model, batch, method=method)
        by_ids = ntk(Plain(model), ids, method=method)
        torch.testing.assert_close(by_dict.kernel, by_ids.kernel)
        assert by_dict.n_inputs == 5
