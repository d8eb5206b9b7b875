"""Tests for deepscope._inputs: tensors, integer ids and dicts of tensors move, slice and call alike."""

from __future__ import annotations

import pytest
import torch

from deepscope import _inputs
from deepscope.errors import DataError


def _batch():
    return {"input_ids": torch.arange(12).reshape(3, 4), "attention_mask": torch.ones(3, 4, dtype=torch.float32)}


def test_batch_length_of_tensor_and_dict():
    assert _inputs.batch_length(torch.zeros(5, 2)) == 5
    assert _inputs.batch_length(_batch()) == 3


def test_batch_length_refuses_mismatched_dict_and_scalars():
    with pytest.raises(DataError, match="same batch length"):
        _inputs.batch_length({"a": torch.zeros(3, 2), "b": torch.zeros(4, 2)})
    with pytest.raises(DataError, match="batch dimension"):
        _inputs.batch_length(torch.tensor(1.0))
    with pytest.raises(DataError, match="empty dict"):
        _inputs.batch_length({})
    with pytest.raises(DataError, match=r"\['a'\].*list"):
        _inputs.batch_length({"a": [1, 2]})


def test_move_casts_only_floats_and_copies():
    batch = _batch()
    moved = _inputs.move(batch, dtype=torch.float64)
    assert moved["input_ids"].dtype == torch.int64
    assert moved["attention_mask"].dtype == torch.float64
    moved["input_ids"][0, 0] = 99
    assert batch["input_ids"][0, 0] == 0  # a copy: the caller's ids are unchanged
    ids = torch.arange(4).reshape(2, 2)
    assert _inputs.move(ids, dtype=torch.float32).dtype == torch.int64


def test_slices_rows_and_concatenate_round_trip():
    batch = _batch()
    parts = [_inputs.slice_rows(batch, 0, 2), _inputs.slice_rows(batch, 2, 3)]
    joined = _inputs.concatenate(parts)
    assert torch.equal(joined["input_ids"], batch["input_ids"])
    picked = _inputs.rows(batch, [2, 0])
    assert torch.equal(picked["input_ids"][0], batch["input_ids"][2])
    x = torch.randn(4, 3)
    assert torch.equal(_inputs.concatenate([x[:1], x[1:]]), x)
    with pytest.raises(DataError):
        _inputs.concatenate([])


def test_call_model_passes_dicts_as_keywords():
    def model(input_ids, attention_mask=None):
        return input_ids.float() * attention_mask

    out = _inputs.call_model(model, _batch())
    assert out.shape == (3, 4)
    assert torch.equal(_inputs.call_model(torch.nn.Identity(), torch.ones(2)), torch.ones(2))


def test_descriptions_and_floating():
    batch = _batch()
    assert _inputs.example_shape(batch) == {"input_ids": (4,), "attention_mask": (4,)}
    assert _inputs.describe(torch.zeros(2, 3, dtype=torch.float32)) == "float32 (3,)"
    assert "'input_ids': int64 (4,)" in _inputs.describe(batch)
    assert [t.dtype for t in _inputs.floating(batch)] == [torch.float32]
