"""A small Transformer encoder classifier over sequence positions, image patches or features.

Pre-norm encoder blocks (Vaswani et al. 2017, "Attention is all you need"; pre-LayerNorm as in
Xiong et al. 2020): ``h = h + MHA(LN(h))``, ``h = h + MLP(LN(h))`` with scaled dot-product
attention ``softmax(QKᵀ/√d_head) V``. Inputs become tokens as follows:

* sequences ``(C, L)``: windows of ``patch_size`` consecutive positions are tokens with
  ``C * patch_size`` features (one-hot DNA, mnist1d); ``patch_size=1`` makes every position a token;
* images ``(C, H, W)``: non-overlapping ``patch_size`` x ``patch_size`` patches (ViT, Dosovitskiy
  et al. 2021), each flattened to ``C * p * p`` features;
* tabular ``(d,)``: each feature is a token with one value (FT-Transformer style, Gorishniy et
  al. 2021).

Tokens are embedded linearly, a learned position embedding is added, and after the blocks the
tokens are layer-normalised, averaged and mapped to logits. Attention is written out with
ordinary tensor operations (no fused kernel), so double backward (Hessian-vector products),
forward-mode AD and module hooks all work.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from deepscope._validation import check_int
from deepscope.errors import invalid_parameter
from deepscope.models._layers import check_classes, check_dropout, check_input_shape

__all__ = ["Transformer", "EncoderBlock", "default_patch_size"]


def default_patch_size(height: int, width: int = 1, min_tokens: int = 16) -> int:
    """The largest common divisor p of H and W that still leaves at least ``min_tokens`` patches (else 1).

    For a sequence of length L call ``default_patch_size(L)``: windows of p positions, at least
    ``min_tokens`` of them (so long sequences do not pay for attention over every position).
    """
    common = math.gcd(height, width) if width > 1 else height
    best = 1
    for size in range(1, common + 1):
        tokens = (height // size) * (width // size if width > 1 else 1)
        if common % size == 0 and tokens >= min_tokens:
            best = size
    return best


class Tokenizer(nn.Module):
    """Reshape one batch of inputs into tokens ``(batch, tokens, token_dim)`` (no parameters)."""

    def __init__(self, input_shape: tuple[int, ...], patch_size: int) -> None:
        super().__init__()
        self.input_shape = input_shape
        self.patch_size = patch_size
        if len(input_shape) == 1:
            self.num_tokens, self.token_dim = input_shape[0], 1
        elif len(input_shape) == 2:
            self.num_tokens, self.token_dim = input_shape[1] // patch_size, input_shape[0] * patch_size
        else:
            channels, height, width = input_shape
            self.num_tokens = (height // patch_size) * (width // patch_size)
            self.token_dim = channels * patch_size * patch_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # branch on the static input shape (not x.ndim) so that torch.fx can trace the model
        if len(self.input_shape) == 1:
            return x.unsqueeze(-1)
        if len(self.input_shape) == 2:
            channels, length = self.input_shape
            windows = x.reshape(-1, channels, length // self.patch_size, self.patch_size).permute(0, 2, 1, 3)
            return windows.reshape(-1, self.num_tokens, self.token_dim)
        channels, height, width = self.input_shape
        p = self.patch_size
        patches = x.reshape(-1, channels, height // p, p, width // p, p).permute(0, 2, 4, 1, 3, 5)
        return patches.reshape(-1, self.num_tokens, self.token_dim)

    def extra_repr(self) -> str:
        return f"tokens={self.num_tokens}, token_dim={self.token_dim}"


class SelfAttention(nn.Module):
    """Multi-head scaled dot-product self-attention, written out: ``softmax(QKᵀ/√d) V``."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.dim = dim
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.softmax = nn.Softmax(dim=-1)
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.shape[1]
        head_dim = self.dim // self.heads
        qkv = self.qkv(x).reshape(-1, tokens, 3, self.heads, head_dim).permute(2, 0, 3, 1, 4)
        query, key, value = qkv[0], qkv[1], qkv[2]
        weights = self.dropout(self.softmax(query @ key.transpose(-2, -1) / math.sqrt(head_dim)))
        mixed = (weights @ value).transpose(1, 2).reshape(-1, tokens, self.dim)
        return self.proj(mixed)


class EncoderBlock(nn.Module):
    """Pre-norm Transformer block: ``h + MHA(LN(h))`` then ``h + MLP(LN(h))``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attention = SelfAttention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(mlp_ratio * dim, dim)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.attention(self.norm1(x)))
        return x + self.dropout(self.mlp(self.norm2(x)))


class Transformer(nn.Module):
    """Tokenizer -> Linear embedding + position embedding -> encoder blocks -> LayerNorm -> mean -> Linear.

    Args:
        input_shape: ``(d,)`` features, ``(C, L)`` sequences or ``(C, H, W)`` images.
        num_classes: number of logits.
        dim: token embedding width (divisible by ``heads``).
        depth: number of encoder blocks.
        heads: attention heads.
        mlp_ratio: hidden width of each block's MLP, as a multiple of ``dim``.
        dropout: dropout on attention weights and residual branches.
        patch_size: patch side for images, window length for sequences (default:
            :func:`default_patch_size`, at least 16 tokens; must divide H and W, or L).

    Inputs ``(batch, *input_shape)`` give logits ``(batch, num_classes)``.

    Example:
        >>> net = Transformer((4, 20), 2)
        >>> net(torch.zeros(3, 4, 20)).shape
        torch.Size([3, 2])
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        dim: int = 32,
        depth: int = 2,
        heads: int = 4,
        mlp_ratio: int = 2,
        dropout: float = 0.0,
        patch_size: int | None = None,
    ) -> None:
        super().__init__()
        shape = check_input_shape(input_shape, "Transformer", ndim=(1, 2, 3))
        classes = check_classes(num_classes, "Transformer")
        width = check_int(dim, "dim", "Transformer", minimum=1)
        n_heads = check_int(heads, "heads", "Transformer", minimum=1)
        if width % n_heads:
            raise invalid_parameter("dim", "Transformer", f"a multiple of heads={n_heads}", dim)
        n_blocks = check_int(depth, "depth", "Transformer", minimum=1)
        ratio = check_int(mlp_ratio, "mlp_ratio", "Transformer", minimum=1)
        rate = check_dropout(dropout, "Transformer")
        patch = 1
        if len(shape) > 1:
            spatial = shape[1:]
            patch = default_patch_size(*spatial) if patch_size is None else patch_size
            patch = check_int(patch, "patch_size", "Transformer", minimum=1)
            if any(size % patch for size in spatial):
                size_text = "x".join(str(s) for s in spatial)
                raise invalid_parameter(
                    "patch_size", "Transformer", f"a divisor of the input size {size_text}", patch_size
                )
        self.tokenizer = Tokenizer(shape, patch)
        self.embed = nn.Linear(self.tokenizer.token_dim, width)
        self.position = nn.Parameter(torch.randn(1, self.tokenizer.num_tokens, width) * 0.02)
        self.blocks = nn.Sequential(*(EncoderBlock(width, n_heads, ratio, rate) for _ in range(n_blocks)))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, classes)
        self.input_shape = shape
        self.num_classes = classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(self.tokenizer(x)) + self.position
        return self.head(self.norm(self.blocks(tokens)).mean(dim=1))
