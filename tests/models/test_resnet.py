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
