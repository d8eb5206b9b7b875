import pytest
import torch
from torch import nn

from deepscope.models import ResNet
from deepscope.models.resnet import BasicBlock


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 16, 16), (1, 40), (4, 20)])
def test_output_shape(shape):
    net = ResNet(shape, 5, channels=(8, 16), blocks_per_stage=2).eval()
    assert net(torch.randn(2, *shape)).shape == (2, 5)


def test_uses_batch_norm_and_one_module_per_activation():
    net = ResNet((1, 8, 8), 3)
    assert any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    relus = [m for m in net.modules() if isinstance(m, nn.ReLU)]
    assert len(relus) == len({id(m) for m in relus}) == 5


def test_block_is_a_residual_addition():
    # oracle: with the second BatchNorm's affine map zeroed (eval mode) the residual branch is 0,
    # so an identity-shortcut block returns exactly relu(x)
    block = BasicBlock(4, 4, stride=1, ndim=2, activation="relu").eval()
    with torch.no_grad():
        block.bn2.weight.zero_()
        block.bn2.bias.zero_()
    x = torch.randn(2, 4, 5, 5)
    torch.testing.assert_close(block(x), torch.relu(x))


def test_projection_shortcut_when_shape_changes():
    block = BasicBlock(4, 8, stride=2, ndim=1, activation="relu").eval()
    assert isinstance(block.shortcut, nn.Sequential)
    assert block(torch.randn(2, 4, 10)).shape == (2, 8, 5)


def _conv(cin, cout, k):
    return cin * cout * k * k


def _bn(c):
    return 2 * c  # weight and bias (running statistics are buffers, not parameters)


def test_resnet18_parameter_count_by_hand():
    # oracle: the CIFAR ResNet-18 counted layer by layer (no biases in convolutions): the standard
    # figure is 11,173,962 for 3 input channels and 10 classes
    from deepscope.models.resnet import resnet18

    def count(in_channels, classes):
        total = _conv(in_channels, 64, 3) + _bn(64)  # stem
        cin = 64
        for cout in (64, 128, 256, 512):
            for _ in range(2):
                total += _conv(cin, cout, 3) + _bn(cout) + _conv(cout, cout, 3) + _bn(cout)
                if cin != cout:  # projection shortcut: 1x1 convolution + BatchNorm
                    total += _conv(cin, cout, 1) + _bn(cout)
                cin = cout
        return total + 512 * classes + classes

    assert count(3, 10) == 11_173_962
    for in_channels, classes in ((3, 10), (1, 100)):
        net = resnet18(num_classes=classes, in_channels=in_channels)
        assert sum(p.numel() for p in net.parameters()) == count(in_channels, classes)
    net = resnet18()
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) == 17  # + 1 linear = 18 weight layers (1x1 shortcuts are not counted)
    assert net.eval()(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


def test_resnet18_refuses_bad_sizes():
    from deepscope.errors import DeepscopeError
    from deepscope.models.resnet import resnet18

    with pytest.raises(DeepscopeError, match="in_channels"):
        resnet18(in_channels=0)
    with pytest.raises(DeepscopeError, match="input_size"):
        resnet18(input_size=4)
