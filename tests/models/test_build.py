from types import SimpleNamespace

import pytest
import torch

from deepscope.errors import DataError, InvalidParameterError
from deepscope.models import ARCHITECTURES, build, default_architecture

TYPICAL = {
    "mlp": (30,),
    "cnn2d": (1, 8, 8),
    "cnn1d": (4, 50),
    "resnet": (1, 16, 16),
    "transformer": (1, 40),
    "basset": (4, 200),
}


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_every_architecture_on_its_typical_input(name):
    shape = TYPICAL[name]
    net = build(name, shape, 7).eval()
    assert net(torch.randn(4, *shape)).shape == (4, 7)
    # the recorded config rebuilds the same architecture (parameter names and shapes)
    config = net.deepscope_config
    assert config["arch"] == name
    again = build(config["arch"], **config["arch_kwargs"])
    assert {k: v.shape for k, v in again.state_dict().items()} == {k: v.shape for k, v in net.state_dict().items()}


def test_same_global_seed_gives_same_weights():
    torch.manual_seed(3)
    first = build("cnn2d", (1, 8, 8), 10)
    torch.manual_seed(3)
    second = build("cnn2d", (1, 8, 8), 10)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))


def test_unknown_name_lists_the_choices():
    with pytest.raises(InvalidParameterError, match="'mlp'"):
        build("vgg", (3,), 2)


def test_unknown_option_is_a_clear_error():
    with pytest.raises(InvalidParameterError, match="build\\('mlp'\\)"):
        build("mlp", (3,), 2, depth=4)


def test_default_architecture_from_input_shape():
    assert default_architecture(SimpleNamespace(input_shape=(30,))) == "mlp"
    assert default_architecture(SimpleNamespace(input_shape=(4, 100))) == "cnn1d"
    assert default_architecture(SimpleNamespace(input_shape=(1, 8, 8))) == "cnn2d"
    with pytest.raises(DataError):
        default_architecture(SimpleNamespace(input_shape=(1, 2, 3, 4)))
    with pytest.raises(InvalidParameterError):
        default_architecture("digits")


def test_default_architecture_on_a_loaded_dataset(digits):
    assert default_architecture(digits) == "cnn2d"


@pytest.mark.filterwarnings(
    "ignore:`torch.jit.script` is deprecated:DeprecationWarning"
)  # torch's own jvp decompositions
@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_forward_over_reverse_hvp_matches_double_backward(name):
    # curvature analyses use torch.func.jvp(grad(...)); oracle: reverse-over-reverse on the same
    # model and batch; float32 round-off over a few thousand parameters -> rtol 1e-4
    shape = (4, 12) if name in ("cnn1d", "transformer") else TYPICAL[name] if name != "resnet" else (1, 8, 8)
    model = build(name, shape, 3).eval()
    params = {k: v.detach() for k, v in model.named_parameters()}
    x, y = torch.randn(4, *shape), torch.tensor([0, 1, 2, 0])

    def loss(p):
        return torch.nn.functional.cross_entropy(torch.func.functional_call(model, p, (x,)), y)

    vector = {k: torch.randn_like(v) for k, v in params.items()}
    _, forward = torch.func.jvp(torch.func.grad(loss), (params,), (vector,))
    leaves = {k: v.clone().requires_grad_() for k, v in params.items()}
    grads = torch.autograd.grad(loss(leaves), list(leaves.values()), create_graph=True)
    dot = sum((g * vector[k]).sum() for g, k in zip(grads, leaves))
    reverse = dict(zip(leaves, torch.autograd.grad(dot, list(leaves.values()))))
    for key in params:
        torch.testing.assert_close(forward[key], reverse[key], rtol=1e-4, atol=1e-5)
