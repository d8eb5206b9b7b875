"""The trainer's data helpers: every kind of input (float, token ids, a dict) checked, moved and fed alike."""

import pytest
import torch
from torch import nn

from deepscope.errors import DataError, UnsupportedModelError
from deepscope.models._train_data import check_split, on_device, scores, unpack


def test_unpack_keeps_named_inputs_and_their_dtypes():
    ids = torch.tensor([[1, 2], [3, 4]])
    x, y, x_test, y_test, task = unpack((({"ids": ids, "mask": [[1, 1], [1, 0]]}, torch.tensor([0, 1])), None))
    assert x["ids"] is ids and x["mask"].dtype == torch.int64  # an array-like becomes a tensor, not a float
    assert x_test is None and y_test is None and task == "classification"
    with pytest.raises(DataError, match=r"train inputs\['bad'\] must be a tensor"):
        unpack((({"bad": object()}, torch.tensor([0])), None))


def test_check_split_reads_every_tensor_of_a_dict():
    y = torch.tensor([0, 1, 0])
    check_split({"x": torch.zeros(3, 2), "mask": torch.ones(3, 2, dtype=torch.bool)}, y, "train", "classification")
    with pytest.raises(DataError, match="NaN or infinite values in 1 example"):
        check_split({"x": torch.tensor([[0.0], [float("nan")], [1.0]])}, y, "train", "classification")
    with pytest.raises(DataError, match="same batch length"):
        check_split({"x": torch.zeros(3, 2), "mask": torch.ones(2, 2)}, y, "train", "classification")
    with pytest.raises(DataError, match="3 inputs but 2 targets"):
        check_split(torch.zeros(3, 2), y[:2], "test", "classification")


def test_on_device_casts_floats_only():
    moved = on_device({"x": torch.zeros(2, 3), "ids": torch.ones(2, 3, dtype=torch.long)}, "cpu", torch.float64)
    assert moved["x"].dtype == torch.float64 and moved["ids"].dtype == torch.int64


class _Named(nn.Module):
    def forward(self, x, scale):
        return {"logits": x * scale}


def test_scores_call_named_inputs_as_keywords_and_pick_through_output_fn():
    x = {"x": torch.ones(2, 3), "scale": torch.full((2, 1), 2.0)}
    assert torch.equal(scores(_Named(), x, lambda out: out["logits"]), torch.full((2, 3), 2.0))
    with pytest.raises(DataError, match="output_fn=lambda out"):
        scores(_Named(), x, None)
    with pytest.raises(UnsupportedModelError, match="output_fn failed"):
        scores(_Named(), x, lambda out: out["missing"])
