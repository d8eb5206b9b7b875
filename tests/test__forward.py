"""The first forward pass: one DataError for inputs the model cannot take, other errors unchanged."""

from __future__ import annotations

import pytest
import torch

from deepscope._forward import first_forward
from deepscope.errors import DataError, InvalidParameterError


def test_the_outputs_come_back_unchanged():
    model = torch.nn.Linear(3, 2)
    x = torch.randn(4, 3)
    assert torch.equal(first_forward(model, x), model(x))


def test_a_shape_error_becomes_the_shared_data_error():
    with pytest.raises(DataError, match=r"cannot take the training inputs of shape \(4,\) per example") as error:
        first_forward(torch.nn.Linear(3, 2), torch.zeros(2, 4), "training inputs")
    assert isinstance(error.value.__cause__, RuntimeError)
    with pytest.raises(DataError, match=r"of shape \(9, 9\) per example"):
        first_forward(torch.nn.Linear(3, 2), torch.zeros(2, 4), shape=(9, 9))


def test_deepscope_errors_pass_unchanged():
    def forward(inputs):
        raise InvalidParameterError("pass output_fn")

    with pytest.raises(InvalidParameterError, match="^pass output_fn$"):
        first_forward(forward, torch.zeros(1, 3))


def test_dict_inputs_are_described_key_by_key():
    from deepscope._forward import first_forward
    from deepscope._inputs import call_model

    inputs = {"input_ids": torch.zeros(2, 5, dtype=torch.long), "attention_mask": torch.ones(2, 5)}
    with pytest.raises(
        DataError,
        match="cannot take the inputs \\{'input_ids': int64 \\(5,\\), 'attention_mask': float32 \\(5,\\)\\} per example",
    ):
        first_forward(lambda x: call_model(torch.nn.Linear(3, 2), x), inputs)
