"""Tiny HuggingFace models for tests: built from configs with random weights, nothing downloaded.

Every builder skips the calling test when ``transformers`` is not installed, seeds torch, and
returns the model in eval mode with HuggingFace's DEFAULT attention (``sdpa``: PyTorch's fused
``scaled_dot_product_attention``), the case issue 12 is about. ``attn_implementation="eager"``
builds the same model (same seed, same weights) with the plain matmul/softmax attention, the
oracle the fused kernel is compared against.

``init_range`` is the std of the random weights (HF's default 0.02 leaves attention nearly uniform
and its curvature ~1e-8; 0.3-0.5 gives attention blocks curvature of order one).

Import from any test as ``import hf_models`` (tests/ is on sys.path through tests/conftest.py).

Example:
    >>> model = tiny_bert()
    >>> inputs, labels = token_batch(4, seq_len=8, vocab=VOCAB, seed=0)
    >>> model(**inputs).logits.shape
    torch.Size([4, 3])
"""

from __future__ import annotations

import pytest
import torch

VOCAB = 100
MAX_POSITIONS = 32
HIDDEN = 32
LAYERS = 2
HEADS = 2
PAD_ID = 0


def _transformers():
    return pytest.importorskip("transformers")


def _finish(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    return model.to(dtype).eval()


def tiny_bert(
    num_labels: int = 3,
    attn_implementation: str | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    hidden: int = HIDDEN,
    layers: int = LAYERS,
    heads: int = HEADS,
    init_range: float = 0.02,
) -> torch.nn.Module:
    """``BertForSequenceClassification``: hidden 32, 2 layers, 2 heads, vocab 100, 32 positions."""
    transformers = _transformers()
    config = transformers.BertConfig(
        vocab_size=VOCAB,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=2 * hidden,
        max_position_embeddings=MAX_POSITIONS,
        num_labels=num_labels,
        pad_token_id=PAD_ID,
        initializer_range=init_range,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    if attn_implementation is not None:
        config._attn_implementation = attn_implementation
    torch.manual_seed(seed)
    return _finish(transformers.BertForSequenceClassification(config), dtype)


def _gpt2_config(
    num_labels: int, attn_implementation: str | None, hidden: int, layers: int, heads: int, init_range: float
):
    transformers = _transformers()
    config = transformers.GPT2Config(
        vocab_size=VOCAB,
        n_positions=MAX_POSITIONS,
        n_embd=hidden,
        n_layer=layers,
        n_head=heads,
        num_labels=num_labels,
        pad_token_id=PAD_ID,
        bos_token_id=VOCAB - 1,
        eos_token_id=VOCAB - 1,
        initializer_range=init_range,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    if attn_implementation is not None:
        config._attn_implementation = attn_implementation
    return transformers, config


def tiny_gpt2(
    num_labels: int = 3,
    attn_implementation: str | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    hidden: int = HIDDEN,
    layers: int = LAYERS,
    heads: int = HEADS,
    init_range: float = 0.02,
) -> torch.nn.Module:
    """``GPT2ForSequenceClassification`` (pad token set, so padded rows pick their last real token)."""
    transformers, config = _gpt2_config(num_labels, attn_implementation, hidden, layers, heads, init_range)
    torch.manual_seed(seed)
    return _finish(transformers.GPT2ForSequenceClassification(config), dtype)


def tiny_gpt2_lm(
    attn_implementation: str | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    hidden: int = HIDDEN,
    layers: int = LAYERS,
    heads: int = HEADS,
    init_range: float = 0.02,
) -> torch.nn.Module:
    """``GPT2LMHeadModel``: ``lm_head.weight`` IS ``transformer.wte.weight`` (tied parameters)."""
    transformers, config = _gpt2_config(2, attn_implementation, hidden, layers, heads, init_range)
    config.tie_word_embeddings = True
    torch.manual_seed(seed)
    model = _finish(transformers.GPT2LMHeadModel(config), dtype)
    if model.lm_head.weight is not model.transformer.wte.weight:  # the case these tests exist for
        raise RuntimeError("transformers did not tie GPT-2's lm_head to its input embedding")
    return model


def tiny_vit(
    num_labels: int = 3,
    attn_implementation: str | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    hidden: int = HIDDEN,
    layers: int = LAYERS,
    heads: int = HEADS,
    init_range: float = 0.02,
) -> torch.nn.Module:
    """``ViTForImageClassification``: 3×16×16 images, 8×8 patches (4 patches + CLS)."""
    transformers = _transformers()
    config = transformers.ViTConfig(
        image_size=16,
        patch_size=8,
        num_channels=3,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=2 * hidden,
        num_labels=num_labels,
        initializer_range=init_range,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    if attn_implementation is not None:
        config._attn_implementation = attn_implementation
    torch.manual_seed(seed)
    return _finish(transformers.ViTForImageClassification(config), dtype)


def token_batch(
    n: int,
    seq_len: int = 8,
    vocab: int = VOCAB,
    seed: int = 0,
    num_labels: int = 3,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """``({"input_ids", "attention_mask"}, labels)``: ids in ``[1, vocab)``, odd rows right-padded.

    Row ``i`` keeps ``seq_len - (i % 2) * (i % seq_len // 2 + 1)`` real tokens; padded positions hold
    ``PAD_ID`` with mask 0, so every batch of two or more rows has padding. Labels in ``[0, num_labels)``.
    """
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1, vocab, (n, seq_len), generator=generator)
    attention_mask = torch.ones(n, seq_len, dtype=torch.long)
    for row in range(1, n, 2):
        padded = min(seq_len - 1, row % max(seq_len // 2, 1) + 1)
        input_ids[row, seq_len - padded :] = PAD_ID
        attention_mask[row, seq_len - padded :] = 0
    labels = torch.randint(0, num_labels, (n,), generator=generator)
    return {"input_ids": input_ids, "attention_mask": attention_mask}, labels


def image_batch(n: int, seed: int = 0, num_labels: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """``(pixel_values (n, 3, 16, 16), labels)`` for :func:`tiny_vit`."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 16, 16, generator=generator), torch.randint(0, num_labels, (n,), generator=generator)


def eager_copy(model: torch.nn.Module) -> torch.nn.Module:
    """The same model, same weights, with ``attn_implementation="eager"`` (the oracle for sdpa)."""
    _transformers()
    config = model.config.__class__.from_dict(model.config.to_dict())
    config._attn_implementation = "eager"
    copy = model.__class__(config).to(next(model.parameters()).dtype).eval()
    copy.load_state_dict(model.state_dict())
    return copy
