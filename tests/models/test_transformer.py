import math

import pytest
import torch

from deepscope.errors import InvalidParameterError
from deepscope.models import Transformer
from deepscope.models.transformer import SelfAttention, Tokenizer, default_patch_size


@pytest.mark.parametrize("shape", [(13,), (4, 20), (1, 8, 8), (3, 16, 16)])
def test_output_shape(shape):
    net = Transformer(shape, 3, dim=16, depth=1, heads=2).eval()
    assert net(torch.randn(2, *shape)).shape == (2, 3)


def test_patches_are_the_image_blocks():
    tokenizer = Tokenizer((2, 4, 6), patch_size=2)
    x = torch.arange(2 * 2 * 4 * 6, dtype=torch.float32).reshape(2, 2, 4, 6)
    tokens = tokenizer(x)
    assert tokens.shape == (2, 6, 8)
    # token (row 1, col 2) of example 1 is the flattened block x[1, :, 2:4, 4:6]
    torch.testing.assert_close(tokens[1, 1 * 3 + 2], x[1, :, 2:4, 4:6].reshape(-1))


def test_sequence_positions_are_tokens():
    x = torch.randn(2, 4, 7)
    torch.testing.assert_close(Tokenizer((4, 7), 1)(x), x.transpose(1, 2))


def test_sequence_windows_are_tokens():
    x = torch.randn(2, 4, 12)
    tokens = Tokenizer((4, 12), 3)(x)
    assert tokens.shape == (2, 4, 12)
    # token 2 of example 1 is the flattened window x[1, :, 6:9] (channel-major)
    torch.testing.assert_close(tokens[1, 2], x[1, :, 6:9].reshape(-1))
    assert Transformer((4, 100), 2).tokenizer.num_tokens == 20  # default window 5 on one-hot DNA


def test_default_patch_size():
    assert default_patch_size(8, 8) == 2
    assert default_patch_size(16, 16) == 4
    assert default_patch_size(28, 28) == 7
    assert default_patch_size(3, 5) == 1
    assert default_patch_size(100) == 5
    assert default_patch_size(40) == 2
    assert default_patch_size(20) == 1


def test_attention_matches_torch_scaled_dot_product():
    # oracle: torch's fused scaled_dot_product_attention on the same projections; float32 round-off
    attention = SelfAttention(8, heads=2, dropout=0.0).eval()
    x = torch.randn(3, 5, 8)
    q, k, v = attention.qkv(x).reshape(3, 5, 3, 2, 4).permute(2, 0, 3, 1, 4)
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(3, 5, 8)
    torch.testing.assert_close(attention(x), attention.proj(expected), rtol=1e-5, atol=1e-6)
    assert math.isclose(float(attention.softmax(torch.zeros(1, 4)).sum()), 1.0)


def test_supports_double_backward_for_hessian_vector_products():
    net = Transformer((4, 6), 2, dim=8, depth=1, heads=2).eval()
    x, y = torch.randn(3, 4, 6), torch.tensor([0, 1, 0])
    params = dict(net.named_parameters())
    loss = torch.nn.functional.cross_entropy(torch.func.functional_call(net, params, (x,)), y)
    grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
    vector = [torch.randn_like(g) for g in grads]
    hvp = torch.autograd.grad(sum((g * v).sum() for g, v in zip(grads, vector)), list(params.values()))
    assert all(torch.isfinite(h).all() for h in hvp)


def test_invalid_options():
    with pytest.raises(InvalidParameterError, match="dim"):
        Transformer((4, 6), 2, dim=10, heads=4)
    with pytest.raises(InvalidParameterError, match="patch_size"):
        Transformer((1, 8, 8), 2, patch_size=3)
