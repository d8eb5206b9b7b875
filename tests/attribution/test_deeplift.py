import sys

import pytest
import torch
from captum.attr import DeepLift
from torch import nn
from torch.nn import functional as F

from deepscope.attribution import deeplift
from deepscope.errors import UnsupportedModelError


def test_matches_captum_on_a_sequential_relu_net(mlp_and_rows):
    model, rows = mlp_and_rows
    baseline = torch.randn_like(rows)
    ours = deeplift(model, rows, target=1, baseline=baseline)
    reference = DeepLift(model).attribute(rows, baselines=baseline, target=1)
    # the same multipliers in float64
    torch.testing.assert_close(ours.values, reference, rtol=1e-10, atol=1e-12)
    assert ours.diagnostics["completeness_error"].max() < 1e-10


def pooled_cnn(relu_before_pool: bool) -> nn.Module:
    torch.manual_seed(1)
    first = [nn.Conv2d(1, 3, 3, padding=1)] + ([nn.ReLU()] if relu_before_pool else [])
    rest = [nn.MaxPool2d(2), nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64, 3)]
    return nn.Sequential(*first, *rest).double()


def test_matches_captum_on_a_cnn_with_max_pooling(cnn_and_images):
    _, images = cnn_and_images
    model = pooled_cnn(relu_before_pool=False)
    ours = deeplift(model, images, target=[[0], [2]], max_batch=4)
    for t, target in enumerate([0, 2]):
        reference = DeepLift(model).attribute(images, target=target)
        # the same multipliers (Captum's max-pool rule) in float64
        torch.testing.assert_close(ours.values[t], reference, rtol=1e-8, atol=1e-12)
    assert ours.diagnostics["completeness_error"].max() < 1e-8


def test_relu_then_max_pool_stays_complete_where_captum_does_not(cnn_and_images):
    # Captum's module hooks on ReLU -> MaxPool give sums that miss F(x) - F(x') (its own
    # convergence delta is of the size of the difference); the graph rules here sum exactly
    _, images = cnn_and_images
    model = pooled_cnn(relu_before_pool=True)
    baseline = torch.rand(images.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    ours = deeplift(model, images, target=0, baseline=baseline)
    assert ours.diagnostics["completeness_error"].max() < 1e-10
    _, captum_delta = DeepLift(model).attribute(images, baselines=baseline, target=0, return_convergence_delta=True)
    assert (captum_delta.abs() > 1e-3 * ours.diagnostics["delta"].abs()).any()


class Functional(nn.Module):
    """The same net as a Sequential, but with one ReLU module used twice and a functional sigmoid."""

    def __init__(self, sequential):
        super().__init__()
        self.first, self.second, self.third = sequential[0], sequential[2], sequential[4]
        self.shared = nn.ReLU()

    def forward(self, x):
        hidden = self.shared(self.first(x))
        hidden = self.shared(self.second(hidden))
        return torch.sigmoid(self.third(hidden))


class FunctionalRelu(Functional):
    def forward(self, x):
        return self.third(F.relu(self.second(F.relu(self.first(x)))))


def test_functional_and_reused_activations(mlp_and_rows):
    model, rows = mlp_and_rows
    sequential = nn.Sequential(*model, nn.Sigmoid())
    ours = deeplift(Functional(model), rows, target=0)
    # the graph rules give the Sequential's answer, which Captum computes correctly
    torch.testing.assert_close(ours.values, DeepLift(sequential).attribute(rows, target=0), rtol=1e-10, atol=1e-12)
    assert ours.diagnostics["completeness_error"].max() < 1e-10
    # Captum hooks modules only and refuses the reused ReLU
    with pytest.raises(RuntimeError, match="used more than once"):
        DeepLift(Functional(model)).attribute(rows, target=0)
    functional = deeplift(FunctionalRelu(model), rows, target=2).values
    torch.testing.assert_close(functional, DeepLift(model).attribute(rows, target=2), rtol=1e-10, atol=1e-12)


def test_consecutive_activations_stay_complete(mlp_and_rows):
    model, rows = mlp_and_rows
    stacked = nn.Sequential(*model, nn.ReLU(), nn.Sigmoid())
    assert deeplift(stacked, rows, target=0).diagnostics["completeness_error"].max() < 1e-10


def test_products_of_two_activations_use_the_midpoint_rule(mlp_and_rows):
    _, rows = mlp_and_rows

    class Square(nn.Module):
        def forward(self, x):
            return x * x

    rows = rows.float()  # a model without parameters runs in the default dtype
    baseline = torch.randn_like(rows)
    got = deeplift(Square(), rows, target=0, baseline=baseline).values
    # analytic: y = x², the midpoint multiplier (x + x')/2 gives φ_0 = (x_0 + x'_0)/2 · (x_0 − x'_0) = x_0² − x'_0²
    want = torch.zeros_like(rows)
    want[:, 0] = rows[:, 0] ** 2 - baseline[:, 0] ** 2
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)  # float32 rounding of a product

    class Branchy(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x

    with pytest.raises(UnsupportedModelError, match="trace"):
        deeplift(Branchy(), rows, target=0)


class _InplaceNet(nn.Module):
    def __init__(self, inplace: bool):
        super().__init__()
        self.a, self.act, self.b, self.c = nn.Linear(5, 6), nn.ReLU(inplace=inplace), nn.Linear(6, 4), nn.Linear(4, 3)
        self.inplace = inplace

    def forward(self, x):
        return self.c(torch.nn.functional.relu(self.b(self.act(self.a(x))), inplace=self.inplace))


def test_inplace_activations_give_the_same_multipliers():
    """In-place ReLUs (module or functional) must not overwrite the saved pre-activation."""
    torch.manual_seed(0)
    plain = _InplaceNet(inplace=False).double()
    inplace = _InplaceNet(inplace=True).double()
    inplace.load_state_dict(plain.state_dict())
    x = torch.randn(8, 5, dtype=torch.float64)
    baseline = x[0]  # row 0 equals its baseline: the plain-derivative branch runs too
    want = deeplift(plain, x, target=[[0], [2]], baseline=baseline)
    got = deeplift(inplace, x, target=[[0], [2]], baseline=baseline)
    torch.testing.assert_close(got.values, want.values, rtol=0, atol=0)
    assert float(got.diagnostics["completeness_error"].max()) < 1e-9


class _DividedHead(nn.Module):
    """h = W₁x; out = W₂ (1 / (σ(h) + ½)): a division whose divisor depends on the input (count 1)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.first, self.head = nn.Linear(5, 4).double(), nn.Linear(4, 3).double()

    def forward(self, x):
        return self.head(1.0 / (torch.sigmoid(self.first(x)) + 0.5))


class _Product(nn.Module):
    """Product of two input-dependent tensors through the torch.mul function and a matmul."""

    def __init__(self, op: str):
        super().__init__()
        self.a, self.b, self.op = nn.Linear(5, 3).double(), nn.Linear(5, 3).double(), op

    def forward(self, x):
        a, b = self.a(x), torch.relu(self.b(x))
        if self.op == "mul":
            return torch.mul(a, b)
        if self.op == "matmul":
            return torch.matmul(a.unsqueeze(2), b.unsqueeze(1)).flatten(1)
        return a.div(b + 1.0)  # the method form of a division


class _NonAffineSteps(nn.Module):
    """One step each that the affine list used to let through or that has no rule at all."""

    def __init__(self, kind: str):
        super().__init__()
        self.first, self.kind = nn.Linear(5, 3).double(), kind
        self.norm = nn.BatchNorm1d(3, track_running_stats=False).double()

    def forward(self, x):
        h = self.first(x)
        if self.kind == "batch_statistics":
            return self.norm(h)
        if self.kind == "gather":
            return h.gather(1, h.argsort(dim=1))
        return torch.sort(h, dim=1).values


@pytest.mark.parametrize(
    ("model", "step"),
    [
        (_DividedHead(), "truediv"),
        (_Product("div"), "div"),
        (_NonAffineSteps("gather"), "argsort"),
        (_NonAffineSteps("sort"), "sort"),
    ],
)
def test_non_affine_steps_are_refused_by_name(mlp_and_rows, model, step):
    _, rows = mlp_and_rows
    with pytest.raises(UnsupportedModelError, match=f"step '{step}'"):
        deeplift(model, rows, target=0)


def test_batch_statistics_and_random_dropout_are_unsupported_steps():
    """Batch statistics mix the stacked input and baseline rows; train-mode dropout is random."""
    import torch.fx as fx

    from deepscope.attribution._deeplift_graph import unsupported_steps

    steps = {
        node.name: what
        for node, what in unsupported_steps(fx.symbolic_trace(_NonAffineSteps("batch_statistics"))).items()
    }
    assert "batch statistics" in steps["norm"]

    class FunctionalDropout(nn.Module):
        def forward(self, x):
            return F.dropout(x, 0.5, training=True) + F.dropout(x, 0.5, training=False)

    steps = {node.name: what for node, what in unsupported_steps(fx.symbolic_trace(FunctionalDropout())).items()}
    assert list(steps) == ["dropout"] and "train mode" in steps["dropout"]


def test_a_division_by_the_input_was_propagated_as_affine_before():
    """The refused case, computed with the division treated as affine: completeness breaks badly."""
    rows = torch.randn(6, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    model = _DividedHead()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys.modules["deepscope.attribution.deeplift"], "unsupported_steps", lambda *_: {})
        wrong = deeplift(model, rows, target=0)
    # the reason for the refusal: multipliers that miss F(x) − F(x') by 6% to 87% on these rows
    assert wrong.diagnostics["completeness_error"].max() > 0.05


class _DeadBranch(nn.Module):
    """A softmax and a product computed but never used: the output does not depend on them."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(4)
        self.first, self.head = nn.Linear(5, 4).double(), nn.Linear(4, 3).double()

    def forward(self, x):
        h = self.first(x)
        unused = torch.softmax(h, dim=1) * h  # noqa: F841 - the dead branch under test
        return self.head(torch.relu(h))


def test_a_dead_branch_is_not_refused(mlp_and_rows):
    _, rows = mlp_and_rows
    model = _DeadBranch()
    twin = nn.Sequential(model.first, nn.ReLU(), model.head)
    got = deeplift(model, rows, target=1)
    torch.testing.assert_close(got.values, deeplift(twin, rows, target=1).values, rtol=0, atol=0)
    assert got.diagnostics["completeness_error"].max() < 1e-10


class _TwoHeads(nn.Module):
    """Returns (logits, scaled): only the second output needs the (refused) division by an activation."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(5)
        self.first, self.head = nn.Linear(5, 4).double(), nn.Linear(4, 3).double()

    def forward(self, x):
        logits = self.head(torch.relu(self.first(x)))
        return {"logits": logits, "scaled": logits / (torch.sigmoid(logits) + 1.0)}


def test_only_the_output_selected_by_output_fn_must_be_supported(mlp_and_rows):
    _, rows = mlp_and_rows
    model = _TwoHeads()
    got = deeplift(model, rows, target=2, output_fn=lambda out: out["logits"])
    twin = nn.Sequential(model.first, nn.ReLU(), model.head)
    torch.testing.assert_close(got.values, deeplift(twin, rows, target=2).values, rtol=0, atol=0)
    with pytest.raises(UnsupportedModelError, match="step 'truediv'"):
        deeplift(model, rows, target=2, output_fn=lambda out: out["scaled"])


def test_shape_arithmetic_and_sums_of_branches_stay_supported(mlp_and_rows):
    model, rows = mlp_and_rows

    class Reshaping(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, x):
            h = x.view(x.size(0), -1).expand_as(x) + x.reshape(x.shape[0], x.shape[1])
            return self.inner(h / 2) - self.inner(h).div(3)

    assert deeplift(Reshaping(), rows, target=0).diagnostics["completeness_error"].max() < 1e-10


def _bpnet(control_tracks: int) -> nn.Module:
    from bpnetlite import BPNet

    torch.manual_seed(0)
    return BPNet(n_filters=8, n_layers=3, n_control_tracks=control_tracks, verbose=False).double().eval()


def _sequences(batch: int, length: int, seed: int) -> torch.Tensor:
    codes = torch.randint(0, 4, (batch, length), generator=torch.Generator().manual_seed(seed))
    return F.one_hot(codes, 4).permute(0, 2, 1).double()


def test_bpnet_count_head_with_control_tracks_matches_tangermeme():
    """The count head takes log(control + 1): a constant, since extra arguments are held fixed."""
    from bpnetlite.bpnet import CountWrapper
    from tangermeme.deep_lift_shap import deep_lift_shap

    model = _bpnet(control_tracks=2)
    x, reference = _sequences(3, 160, 0), _sequences(3, 160, 1)
    control = torch.rand(3, 2, 160, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    ours = deeplift(model, x, target=0, baseline=reference, args=(control,), output_fn=lambda out: out[1])
    multipliers = deep_lift_shap(
        CountWrapper(model), x, args=(control,), references=reference[:, None], raw_outputs=True, device="cpu"
    )
    # the same multipliers (rescale rule on ReLUs, linear layers) in float64
    torch.testing.assert_close(ours.values, (x - reference) * multipliers[:, 0], rtol=1e-9, atol=1e-12)
    assert ours.diagnostics["completeness_error"].max() < 1e-10
    wrapped = deeplift(
        CountWrapper(model), x, target=0, baseline=reference, args=(control,)
    )  # forward(X, X_ctl=None, **kwargs)
    torch.testing.assert_close(wrapped.values, ours.values, rtol=0, atol=0)


def test_unused_optional_arguments_are_traced_at_their_defaults():
    from bpnetlite.bpnet import CountWrapper

    model = _bpnet(control_tracks=0)
    x = _sequences(2, 160, 3)
    got = deeplift(CountWrapper(model), x, target=0)  # X_ctl=None: the branch without controls
    assert got.diagnostics["completeness_error"].max() < 1e-10
    with pytest.raises(Exception, match="args"):
        deeplift(model, x, target=0, args=(torch.zeros(3, 2, 160),), output_fn=lambda out: out[1])  # 3 rows, 2 examples
