"""DataSource on dict and integer inputs: ids keep their dtype, dicts stay dicts, bad batches are named."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, default_collate

from deepscope.data.source import DataSource, check_masks
from deepscope.errors import DataError


def _dict_data(n=10, length=5):
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 20, (n, length), generator=generator)
    mask = torch.ones(n, length)
    return {"input_ids": ids, "attention_mask": mask}, torch.arange(n) % 3


def test_dict_batches_keep_integer_ids_and_cast_only_floats():
    x, y = _dict_data()
    source = DataSource((x, y), batch_size=4)
    batches = list(source.batches(dtype=torch.float64))
    assert [len(batch_y) for _, batch_y in batches] == [4, 4, 2]
    first_x, first_y = batches[0]
    assert first_x["input_ids"].dtype == torch.int64 and first_x["attention_mask"].dtype == torch.float64
    assert torch.equal(first_x["input_ids"], x["input_ids"][:4]) and torch.equal(first_y, y[:4])
    first_x["input_ids"][0, 0] = 99  # a copy: the caller's ids are untouched
    assert int(x["input_ids"][0, 0]) != 99


def test_tensors_returns_a_dict_and_max_samples_cuts_every_key():
    x, y = _dict_data()
    inputs, targets = DataSource((x, y), batch_size=3).tensors(max_samples=7)
    assert set(inputs) == {"input_ids", "attention_mask"}
    assert torch.equal(inputs["input_ids"], x["input_ids"][:7]) and torch.equal(targets, y[:7])


def test_integer_tensor_inputs_are_never_cast():
    ids = torch.randint(0, 9, (6, 4))
    x, _ = DataSource((ids, torch.zeros(6, dtype=torch.long))).tensors(dtype=torch.float64)
    assert x.dtype == torch.int64 and torch.equal(x, ids)


def test_numpy_values_in_a_dict_become_tensors():
    x, y = _dict_data()
    numpy_x = {name: value.numpy() for name, value in x.items()}
    inputs, _ = DataSource((numpy_x, y.numpy())).tensors()
    assert inputs["input_ids"].dtype == torch.int64 and torch.equal(inputs["input_ids"], x["input_ids"])


def test_loader_of_dict_pairs_and_of_dicts_with_labels_give_the_tensor_batches():
    x, y = _dict_data()
    pairs = [({name: value[i] for name, value in x.items()}, y[i]) for i in range(len(y))]
    labelled = [{**{name: value[i] for name, value in x.items()}, "labels": y[i]} for i in range(len(y))]
    want_x, want_y = DataSource((x, y)).tensors()
    for data in (DataLoader(pairs, batch_size=4), DataLoader(labelled, batch_size=4)):
        source = DataSource(data)
        assert len(source) == 10
        got_x, got_y = source.tensors()
        assert torch.equal(got_y, want_y)
        for name in want_x:
            torch.testing.assert_close(got_x[name], want_x[name], rtol=0, atol=0)


def test_mismatched_batch_lengths_in_a_dict_are_refused():
    x, y = _dict_data()
    with pytest.raises(DataError, match="same batch length.*'input_ids': 10, 'attention_mask': 6"):
        DataSource(({**x, "attention_mask": x["attention_mask"][:6]}, y))


def test_targets_and_dict_inputs_of_different_lengths_are_refused():
    x, y = _dict_data()
    with pytest.raises(DataError, match="as many targets as inputs.*10 example.*targets of shape \\(7,\\)"):
        DataSource((x, y[:7]))


def test_attention_mask_of_another_shape_is_refused():
    x, y = _dict_data()
    with pytest.raises(DataError, match="attention_mask of shape \\(10, 4\\) and input_ids of shape \\(10, 5\\)"):
        DataSource(({**x, "attention_mask": x["attention_mask"][:, :4]}, y))
    check_masks({**x, "attention_mask": torch.ones(10, 1, 5, 5)})  # HF's 4-D masks end in the length
    with pytest.raises(DataError, match="attention_mask"):
        check_masks({**x, "attention_mask": torch.ones(10, 1, 5, 6)})


def test_a_bad_mask_in_a_late_loader_batch_is_named():
    x, y = _dict_data()
    pairs = [({name: value[i] for name, value in x.items()}, y[i]) for i in range(len(y))]

    def collate(items):  # the last batch (2 examples) comes with a cut mask
        inputs, targets = default_collate(items)
        if len(targets) == 2:
            inputs["attention_mask"] = inputs["attention_mask"][:, :3]
        return inputs, targets

    source = DataSource(DataLoader(pairs, batch_size=4, collate_fn=collate))
    assert len(list(source.batches(max_samples=8))) == 2
    with pytest.raises(DataError, match="batch 2 of the train data"):
        list(source.batches())


def test_non_finite_float_values_in_a_dict_are_refused():
    x, y = _dict_data()
    mask = x["attention_mask"].clone()
    mask[3, 1] = np.nan
    with pytest.raises(DataError, match="NaN or infinite values in 1 example"):
        DataSource(({**x, "attention_mask": mask}, y))


def test_an_empty_dict_and_a_bad_batch_kind_are_refused():
    with pytest.raises(DataError, match="empty dict"):
        DataSource(({}, torch.zeros(3)))
    with pytest.raises(DataError, match="pair \\(x, y\\) or a dict with 'labels'"):
        list(DataSource(DataLoader([torch.zeros(2, 3)], batch_size=None)).batches())


def test_a_dict_with_labels_is_the_pair_of_its_other_entries_and_the_labels():
    x, y = _dict_data()
    inputs, targets = DataSource({**x, "labels": y}).tensors()
    assert set(inputs) == {"input_ids", "attention_mask"} and torch.equal(targets, y)
    with pytest.raises(DataError, match="as many targets as inputs"):
        DataSource({**x, "labels": y[:3]})
