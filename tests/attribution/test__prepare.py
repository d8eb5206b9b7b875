"""The shared preparation of every attribution method: inputs, baselines, the forward, targets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from deepscope.attribution._prepare import (
    check_max_batch,
    evaluate_outputs,
    make_forward,
    model_device_dtype,
    prepare,
    prepare_baseline,
    prepare_inputs,
    resolve_targets,
)
from deepscope.errors import DataError, InvalidParameterError, UnsupportedModelError


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3))


def test_inputs_become_a_checked_copy_in_the_models_dtype():
    x = torch.randn(2, 4)
    copy = prepare_inputs(_model().double(), x, "saliency")
    assert copy.dtype == torch.float64 and copy.data_ptr() != x.data_ptr()
    assert model_device_dtype(_model().double()) == (torch.device("cpu"), torch.float64)
    for bad, words in (
        (x[0], "non-empty tensor of shape"),
        (x[:0], "non-empty"),
        (x.long(), "floating-point"),
        ([1.0], "torch.Tensor"),
    ):
        with pytest.raises(InvalidParameterError, match=words):
            prepare_inputs(_model(), bad, "saliency")
    # a perturbation method that does not take tokens reads an integer tensor as numbers (int one-hot DNA)
    assert prepare_inputs(_model(), x.long(), "ism", gradient=False).dtype == torch.float32
    with pytest.raises(DataError, match="contain 1 NaN or infinite value"):
        prepare_inputs(_model(), torch.tensor([[0.0, float("nan"), 1.0, 2.0]]), "saliency")


def test_baselines():
    x = torch.randn(3, 4)
    assert torch.equal(prepare_baseline(None, x, "ig"), torch.zeros_like(x))
    assert torch.equal(prepare_baseline(0.5, x, "ig"), torch.full_like(x, 0.5))
    one = torch.arange(4.0)
    assert torch.equal(prepare_baseline(one, x, "ig"), one.expand(3, 4))  # one reference for every example
    with pytest.raises(InvalidParameterError, match=r"a tensor of shape \(3, 4\) or \(4,\)"):
        prepare_baseline(torch.zeros(2, 4), x, "ig")
    with pytest.raises(InvalidParameterError, match="'reference' parameter of ig must be a finite number"):
        prepare_baseline(float("inf"), x, "ig", name="reference")
    with pytest.raises(DataError, match="contains NaN"):
        prepare_baseline(torch.full((4,), float("nan")), x, "ig")
    with pytest.raises(InvalidParameterError, match="None, a number, or a tensor"):
        prepare_baseline("zeros", x, "ig")


def test_the_forward_gives_batch_by_classes():
    forward = make_forward(nn.Linear(4, 1), None, "f")
    assert forward(torch.randn(3, 4)).shape == (3, 1)  # a 1-D output becomes one column
    with pytest.raises(
        UnsupportedModelError, match=r"output has shape \(6, 1\); expected \(batch, classes\) with batch = 3"
    ):
        make_forward(nn.Sequential(nn.Linear(4, 2), nn.Flatten(0)), None, "f")(torch.randn(3, 4))
    with pytest.raises(InvalidParameterError, match="'output_fn' parameter of f"):
        make_forward(_model(), "logits", "f")
    outputs = evaluate_outputs(make_forward(_model(), None, "f"), torch.randn(7, 4), max_batch=3)
    assert outputs.shape == (7, 3) and not outputs.requires_grad


@pytest.mark.parametrize(
    ("target", "expected", "multi"),
    [
        (None, "argmax", False),
        (2, [[2, 2]], False),
        (np.int64(1), [[1, 1]], False),
        ([0, 2], [[0, 2]], False),
        (torch.tensor([1, 0]), [[1, 0]], False),
        ([[0], [2]], [[0, 0], [2, 2]], True),
        (np.array([[1, 2]]), [[1, 2]], True),
    ],
)
def test_every_target_form(target, expected, multi):
    model, x = _model(), torch.randn(2, 4)
    targets, several, evaluations = resolve_targets(make_forward(model, None, "f"), x, target, "f")
    if expected == "argmax":
        expected = [model(x).argmax(1).tolist()]
        assert evaluations == 2  # one pass over the batch
    else:
        assert evaluations == 1  # a one-row probe checks the class count
    assert targets.tolist() == expected and several is multi


@pytest.mark.parametrize(
    ("target", "words"),
    [
        (3, r"class indices in \[0, 2\]"),
        (True, "target"),
        ([0, 1, 2], "a list of 2 int"),
        (torch.tensor([0.5, 1]), "integer class"),
    ],
)
def test_bad_targets(target, words):
    with pytest.raises(InvalidParameterError, match=words):
        resolve_targets(make_forward(_model(), None, "f"), torch.randn(2, 4), target, "f")


def test_prepare_and_max_batch():
    prepared = prepare(_model(), torch.randn(2, 4), None, owner="saliency", max_batch=1)
    assert prepared.max_batch == 1 and prepared.targets.shape == (1, 2) and not prepared.multi
    for bad in (0, True, 2.0):
        with pytest.raises(InvalidParameterError, match="'max_batch' parameter of f must be an int >= 1"):
            check_max_batch(bad, "f")
    with pytest.raises(InvalidParameterError, match="'model' parameter of saliency"):
        prepare(lambda x: x, torch.randn(2, 4), None, owner="saliency")
    with pytest.raises(DataError, match=r"cannot take the inputs of shape \(3,\)"):
        prepare(_model(), torch.randn(2, 3), None, owner="saliency")


# ---- token ids and dicts of tensors (issue 12, item 3)


def test_gradient_methods_refuse_token_ids_and_name_the_layer_methods():
    from deepscope.attribution import input_x_gradient, integrated_gradients, saliency

    model = torch.nn.Sequential(torch.nn.Embedding(10, 3), torch.nn.Flatten(), torch.nn.Linear(6, 2))
    ids = torch.randint(0, 10, (2, 2))
    for method in (saliency, input_x_gradient, integrated_gradients):
        with pytest.raises(InvalidParameterError, match="layer_integrated_gradients") as caught:
            method(model, ids)
        assert "neither differentiated" in str(caught.value) and "occlusion" in str(caught.value)
        with pytest.raises(InvalidParameterError, match="dict of named tensors"):
            method(model, {"input_ids": ids})


def test_token_inputs_are_copied_never_cast():
    model = torch.nn.Linear(2, 2).double()
    ids = torch.tensor([[1, 2]])
    batch = {"input_ids": ids, "scale": torch.ones(1, 2)}
    copied = prepare_inputs(model, batch, "m", tokens=True)
    assert copied["input_ids"].dtype == torch.int64 and copied["scale"].dtype == torch.float64
    assert copied["input_ids"] is not ids and torch.equal(copied["input_ids"], ids)
    with pytest.raises(DataError, match="NaN"):
        prepare_inputs(model, {"input_ids": ids, "scale": torch.tensor([[float("nan"), 1.0]])}, "m", tokens=True)
    with pytest.raises(DataError, match="same batch length"):
        prepare_inputs(model, {"input_ids": ids, "mask": torch.ones(2, 2)}, "m", tokens=True)


def test_prepare_runs_a_dict_batch_as_keyword_arguments():
    class Named(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(5, 2)

        def forward(self, input_ids, attention_mask):
            return (self.embed(input_ids) * attention_mask.unsqueeze(-1)).sum(1)

    model = Named()
    batch = {
        "input_ids": torch.tensor([[1, 2], [3, 4], [0, 1]]),
        "attention_mask": torch.tensor([[1, 1], [1, 0], [1, 1]]),
    }
    prepared = prepare(model, batch, None, owner="m", tokens=True, max_batch=2)
    assert torch.equal(prepared.targets[0], model(**batch).argmax(1))
    with pytest.raises(DataError, match="input_ids"):
        prepare(
            model, {"input_ids": torch.tensor([[9, 9]]), "attention_mask": torch.ones(1, 2)}, 0, owner="m", tokens=True
        )
