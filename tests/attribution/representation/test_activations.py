import pytest
import torch

from deepscope.attribution.representation._activations import collect_activations, default_layers
from deepscope.attribution.representation.tcav import layer_gradients


class Boom(RuntimeError):
    pass


def _net():
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Dropout(0.1), torch.nn.ReLU(), torch.nn.Linear(4, 2))


def test_collected_activations_are_the_module_outputs():
    net = _net().eval()
    x = torch.randn(9, 3)
    activations = collect_activations(net, x, ["0", "2"], max_batch=4)  # three chunks
    torch.testing.assert_close(activations["0"], net[0](x).detach().double())
    torch.testing.assert_close(activations["2"], torch.relu(net[0](x)).detach().double())
    assert default_layers(net) == ["0", "2", "3"]


@pytest.mark.parametrize("collect", ["activations", "gradients"])
def test_hooks_are_removed_when_the_forward_pass_fails(collect):
    net = _net()

    def explode(module, args):
        raise Boom("injected")

    handle = net[3].register_forward_pre_hook(explode)
    with pytest.raises(Boom):
        if collect == "activations":
            collect_activations(net, torch.randn(2, 3), ["0", "2"])
        else:
            layer_gradients(net, torch.randn(2, 3), "2", target=0)
    handle.remove()
    assert all(not module._forward_hooks for module in net.modules())
