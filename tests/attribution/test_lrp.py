import copy

import pytest
import torch
from captum.attr import LRP
from torch import nn

from deepscope.attribution import lrp
from deepscope.errors import InvalidParameterError, UnsupportedModelError


class CaptumCompatible(nn.Module):
    """The same CNN with a functional flatten (Captum's LRP has no rule for nn.Flatten)."""

    def __init__(self, sequential):
        super().__init__()
        self.features = copy.deepcopy(sequential[:5])
        self.head = copy.deepcopy(sequential[6])

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


def test_epsilon_matches_captum(cnn_and_images):
    model, images = cnn_and_images
    ours = lrp(model, images, target=[[1], [2]])
    reference = LRP(CaptumCompatible(model)).attribute(images, target=1)
    # same epsilon rule (1e-9, sign(0) = +1) in float64
    torch.testing.assert_close(ours.values[0], reference, rtol=1e-7, atol=1e-10)


def test_conservation_is_exact_for_a_bias_free_relu_net(make_relu_mlp):
    model = make_relu_mlp(bias=False)
    rows = torch.randn(5, 5, dtype=torch.float64)
    for rule in ["epsilon", "gamma"]:
        # without biases and stabiliser every layer passes its relevance on whole (float64 rounding only);
        # alpha-beta conserves only where a unit has both positive and negative contributions
        result = lrp(model, rows, target=[[0], [2]], rule=rule, epsilon=0.0)
        assert result.diagnostics["conservation_error"].max() < 1e-9, rule


def test_single_linear_layer_rules_by_hand():
    layer = nn.Linear(3, 1, bias=False).double()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[2.0, -1.0, 0.5]]))
    x = torch.tensor([[1.0, 2.0, 4.0]], dtype=torch.float64)  # z = 2 - 2 + 2 = 2
    epsilon = lrp(layer, x, target=0, epsilon=0.0).values
    torch.testing.assert_close(epsilon, torch.tensor([[2.0, -2.0, 2.0]], dtype=torch.float64))
    # z+: only positive a·w (2 and 2): R = 2 * [2, 0, 2] / 4
    zplus = lrp(layer, x, target=0, rule="zplus", epsilon=0.0).values
    torch.testing.assert_close(zplus, torch.tensor([[1.0, 0.0, 1.0]], dtype=torch.float64))
    # gamma = 1: ρ(w) = w + w⁺ = [4, -1, 1]: contributions [4, -2, 4] / 6 of R = 2
    gamma = lrp(layer, x, target=0, rule="gamma", gamma=1.0, epsilon=0.0).values
    torch.testing.assert_close(gamma, torch.tensor([[4 / 3, -2 / 3, 4 / 3]], dtype=torch.float64))
    # α = 2, β = 1: 2·[2, 0, 2]/4·2 − 1·[0, -2, 0]/(-2)·2 = [2, -2, 2]
    alpha_beta = lrp(layer, x, target=0, rule="alpha_beta", alpha=2.0, beta=1.0, epsilon=0.0).values
    torch.testing.assert_close(alpha_beta, torch.tensor([[2.0, -2.0, 2.0]], dtype=torch.float64))


def test_batchnorm_is_merged_into_the_preceding_layer():
    torch.manual_seed(0)
    with_bn = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 2)).double()
    with torch.no_grad():
        with_bn[1].running_mean.uniform_(-1, 1)
        with_bn[1].running_var.uniform_(0.5, 2)
        with_bn[1].weight.uniform_(0.5, 2)
    with_bn.eval()
    merged = nn.Linear(4, 6).double()
    bn = with_bn[1]
    factor = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    with torch.no_grad():
        merged.weight.copy_(with_bn[0].weight * factor[:, None])
        merged.bias.copy_((with_bn[0].bias - bn.running_mean) * factor + bn.bias)
    folded = nn.Sequential(merged, nn.ReLU(), with_bn[3])
    rows = torch.randn(5, 4, dtype=torch.float64)
    torch.testing.assert_close(lrp(with_bn, rows, target=1).values, lrp(folded, rows, target=1).values)


def test_composites_and_refusals(cnn_and_images):
    model, images = cnn_and_images
    composite = lrp(model, images, target=0, rule="epsilon_plus")
    assert composite.values.shape == images.shape
    by_type = lrp(model, images, target=0, rule={nn.Conv2d: "zplus", "Linear": "epsilon"})
    torch.testing.assert_close(composite.values, by_type.values)
    with pytest.raises(InvalidParameterError, match="rule"):
        lrp(model, images, rule="magic")

    class Residual(nn.Module):
        def forward(self, x):
            return x + 1

    shifted = lrp(nn.Sequential(Residual(), nn.Flatten(), nn.Linear(64, 2).double()), images, target=0)
    assert bool(torch.isfinite(shifted.values).all())  # x + 1: the constant absorbs its share of relevance

    class Squared(nn.Module):
        def forward(self, x):
            return x * x

    with pytest.raises(UnsupportedModelError, match="no propagation rule for step 'mul'"):
        lrp(nn.Sequential(Squared(), nn.Flatten(), nn.Linear(64, 2).double()), images)


def test_custom_forward_chain_matches_captum_on_the_same_model(cnn_and_images):
    """A module with its own forward (not nn.Sequential) is traced into the same chain; Captum runs on it too."""
    model, images = cnn_and_images
    custom = CaptumCompatible(model)
    ours = lrp(custom, images, target=1)
    reference = LRP(custom).attribute(images, target=1)
    torch.testing.assert_close(ours.values, reference, rtol=1e-7, atol=1e-10)  # as in the Sequential test
    torch.testing.assert_close(ours.values, lrp(model, images, target=1).values, rtol=0, atol=0)


class FunctionalNet(nn.Module):
    """Functional pooling, activation and the common ``x.view(x.size(0), -1)`` between module layers."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.norm = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        x = torch.nn.functional.max_pool2d(torch.relu(self.norm(self.conv(x))), 2)
        x = x.view(x.size(0), -1)
        return self.fc(torch.nn.functional.relu(x))


def test_functional_forward_equals_its_sequential_twin():
    torch.manual_seed(0)
    net = FunctionalNet().double()
    with torch.no_grad():
        net.norm.running_mean.uniform_(-0.5, 0.5)
        net.norm.running_var.uniform_(0.5, 2.0)
    net.eval()
    twin = nn.Sequential(net.conv, net.norm, nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.ReLU(), net.fc)
    x = torch.randn(6, 1, 8, 8, dtype=torch.float64)
    for rule in ["epsilon", "epsilon_plus", "alpha_beta"]:
        got = lrp(
            net,
            x,
            target=[[0], [2]],
            rule=rule,
            alpha=2.0 if rule == "alpha_beta" else 1.0,
            beta=1.0 if rule == "alpha_beta" else 0.0,
        )
        want = lrp(
            twin,
            x,
            target=[[0], [2]],
            rule=rule,
            alpha=2.0 if rule == "alpha_beta" else 1.0,
            beta=1.0 if rule == "alpha_beta" else 0.0,
        )
        torch.testing.assert_close(got.values, want.values, rtol=0, atol=0)  # the same steps: bit-identical


class _Residual(nn.Module):
    """A bias-free ReLU network with a skip connection, a fan-out input and a concatenation."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 6, bias=False)
        self.b = nn.Linear(6, 6, bias=False)
        self.c = nn.Linear(12, 3, bias=False)

    def forward(self, x):
        h = torch.relu(self.a(x))
        h = h + torch.relu(self.b(h))  # residual block: h is used twice
        return self.c(torch.cat([h, torch.relu(-h)], dim=1))


def test_residual_and_concatenation_equal_gradient_times_input():
    """For a bias-free ReLU network LRP-ε with ε → 0 equals x ⊙ ∇f(x) (Montavon et al. 2019): sums pass
    relevance in proportion to their operands, fan-outs collect both uses, concatenations split it."""
    torch.manual_seed(0)
    model = _Residual().double()
    x = torch.randn(7, 4, dtype=torch.float64)
    result = lrp(model, x, target=[[0], [2]], epsilon=1e-12)
    for position, target in enumerate([0, 2]):
        leaf = x.clone().requires_grad_(True)
        (gradient,) = torch.autograd.grad(model(leaf)[:, target].sum(), leaf)
        # ε = 1e-12 perturbs each share by at most ~ε/|z|; |z| of the random pre-activations is far above 1e-6
        torch.testing.assert_close(result.values[position], x * gradient, rtol=1e-6, atol=1e-9)
    assert float(result.diagnostics["conservation_error"].max()) < 1e-6


def test_resnet_with_batchnorm_runs_and_reports_conservation():
    from deepscope.models import build

    torch.manual_seed(0)
    model = build("resnet", (1, 8, 8), 4).double().eval()
    x = torch.randn(5, 1, 8, 8, dtype=torch.float64)
    result = lrp(model, x, target=1, rule="epsilon_plus")
    assert result.values.shape == x.shape and bool(torch.isfinite(result.values).all())
    assert result.diagnostics["conservation_error"].shape == (5,)


class _Softmax(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 2)

    def forward(self, x):
        return torch.softmax(self.a(x), dim=1)


class _Product(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 2), nn.Linear(4, 2)

    def forward(self, x):
        return self.a(x) * self.b(x)


class _ScaledSum(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 4)

    def forward(self, x):
        return torch.add(x, self.a(x), alpha=0.5)


@pytest.mark.parametrize(
    "model, message",
    [
        (_Softmax(), "no propagation rule for step 'softmax'"),
        (_Product(), "no propagation rule for step 'mul'"),
        (_ScaledSum(), "scaled sum"),
    ],
)
def test_steps_without_a_rule_are_refused_by_name(model, message):
    with pytest.raises(UnsupportedModelError, match=message):
        lrp(model, torch.randn(3, 4))


class _TorchvisionStyleBlock(nn.Module):
    """The torchvision BasicBlock idiom: in-place ReLUs, ``out += identity``, a ``mean`` head."""

    def __init__(self, inplace: bool):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1, bias=False)
        self.conv1 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.relu = nn.ReLU(inplace=inplace)
        self.fc = nn.Linear(4, 3, bias=False)
        self.inplace = inplace

    def forward(self, x):
        x = self.relu(self.stem(x))
        identity = x
        out = self.conv2(self.relu(self.conv1(x)))
        if self.inplace:
            out += identity
        else:
            out = out + identity
        out = torch.nn.functional.relu(out, inplace=self.inplace)
        return self.fc(out.mean((2, 3)))


def test_torchvision_style_residual_block_equals_gradient_times_input():
    torch.manual_seed(0)
    plain, inplace = _TorchvisionStyleBlock(False).double(), _TorchvisionStyleBlock(True).double()
    inplace.load_state_dict(plain.state_dict())
    x = torch.randn(4, 1, 6, 6, dtype=torch.float64)
    want = lrp(plain, x, target=1, epsilon=1e-12)
    got = lrp(inplace, x, target=1, epsilon=1e-12)
    torch.testing.assert_close(got.values, want.values, rtol=0, atol=0)  # in-place ops evaluated out of place
    leaf = x.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(plain(leaf)[:, 1].sum(), leaf)
    torch.testing.assert_close(want.values, x * gradient, rtol=1e-6, atol=1e-9)  # LRP-0 = x ⊙ ∇f (bias-free)


class _AliasedInPlace(nn.Module):
    """``a`` is overwritten in place by the ReLU and read again afterwards: eager and LRP's stored
    activations would disagree, so LRP refuses."""

    def __init__(self):
        super().__init__()
        self.a, self.relu, self.b = nn.Linear(4, 4), nn.ReLU(inplace=True), nn.Linear(4, 2)

    def forward(self, x):
        a = self.a(x)
        return self.b(self.relu(a) + a)


def test_in_place_step_on_a_shared_tensor_is_refused():
    with pytest.raises(UnsupportedModelError, match="works in place on 'a'"):
        lrp(_AliasedInPlace(), torch.randn(3, 4))


class _Division(nn.Module):
    """A quotient of activations: LRP has no rule for it (it must not pass as a linear step)."""

    def __init__(self):
        super().__init__()
        self.a, self.head = nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x):
        return self.head(1.0 / (torch.sigmoid(self.a(x)) + 0.5))


def test_a_division_by_an_activation_is_refused_by_name():
    with pytest.raises(UnsupportedModelError, match="step 'truediv'"):
        lrp(_Division(), torch.randn(3, 4))


class _Heads(nn.Module):
    """A dead softmax branch, and a dict output of logits and (refused) probabilities."""

    def __init__(self, returns: str):
        super().__init__()
        torch.manual_seed(6)
        self.a, self.head, self.returns = nn.Linear(4, 5, bias=False), nn.Linear(5, 3, bias=False), returns

    def forward(self, x):
        logits = self.head(torch.relu(self.a(x)))
        probabilities = torch.softmax(logits, dim=1) * logits
        if self.returns == "logits":
            return logits  # the probabilities above are a dead branch
        return {"logits": logits, "probabilities": probabilities}


def test_dead_branches_and_unselected_outputs_need_no_rule():
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(7))
    plain = _Heads("logits")
    twin = nn.Sequential(plain.a, nn.ReLU(), plain.head)
    expected = lrp(twin, x, target=1).values
    torch.testing.assert_close(lrp(plain, x, target=1).values, expected, rtol=0, atol=0)
    both = _Heads("dict")
    both.load_state_dict(plain.state_dict())
    got = lrp(both, x, target=1, output_fn=lambda out: out["logits"])
    torch.testing.assert_close(got.values, expected, rtol=0, atol=0)
    with pytest.raises(UnsupportedModelError, match="step 'softmax'"):
        lrp(both, x, target=1, output_fn=lambda out: out["probabilities"])


def test_tuple_outputs_need_an_output_fn_that_picks_a_returned_tensor():
    x = torch.randn(3, 4)
    model = _Heads("dict")
    with pytest.raises(UnsupportedModelError, match="pass output_fn"):
        lrp(model, x, target=0)
    with pytest.raises(UnsupportedModelError, match="must pick one of the tensors"):
        lrp(model, x, target=0, output_fn=lambda out: out["logits"] * 2)


def test_an_unused_optional_argument_is_traced_at_its_default():
    """``forward(x, extra=None)``: symbolic_trace would trace the ``extra`` branch; lrp takes the None branch."""
    torch.manual_seed(0)
    body = nn.Sequential(nn.Linear(5, 4, bias=False), nn.ReLU(), nn.Linear(4, 3, bias=False)).double()

    class Optional(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = body

        def forward(self, x, extra=None):
            out = self.body(x)
            return out if extra is None else out * extra

    rows = torch.randn(6, 5, dtype=torch.float64)
    got = lrp(Optional(), rows, target=1)
    torch.testing.assert_close(got.values, lrp(body, rows, target=1).values, rtol=0, atol=0)
