"""User files: .npz, .csv, .pt; every bad input gives a one-line DataError (or UnsafeFileError)."""

import re

import numpy as np
import pytest
import torch

from deepscope.data.files import load_file
from deepscope.errors import DataError, InvalidParameterError, UnsafeFileError


def _toy(n=40, d=3, classes=2, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)).astype(np.float32), (np.arange(n) % classes).astype(np.int64)


def test_npz_without_test_split_is_split_with_a_fixed_seed(tmp_path):
    x, y = _toy()
    path = tmp_path / "toy.npz"
    np.savez(path, x=x, y=y)
    data = load_file(path, seed=0)
    assert data.name == "toy" and data.task == "classification" and data.num_classes == 2
    assert len(data.x_train) == 30 and len(data.x_test) == 10
    assert torch.equal(load_file(path, seed=0).x_test, data.x_test)
    # every returned row is one of the file's rows with its own label
    rows = {row.tobytes(): label for row, label in zip(x, y)}
    for row, label in zip(data.x_test.numpy(), data.y_test.tolist()):
        assert rows[row.tobytes()] == label


def test_npz_with_test_split_and_masks_keeps_them(tmp_path):
    x, y = _toy()
    path = tmp_path / "split.npz"
    np.savez(path, x=x, y=y, x_test=x[:5] + 1, y_test=y[:5], mask=np.ones_like(x), mask_test=np.zeros_like(x[:5]))
    data = load_file(path)
    assert torch.equal(data.x_train, torch.from_numpy(x)) and torch.equal(data.x_test, torch.from_numpy(x[:5] + 1))
    assert data.has_ground_truth and data.mask_test.sum() == 0


def test_regression_target_inferred(tmp_path):
    x, _ = _toy()
    path = tmp_path / "reg.npz"
    np.savez(path, x=x, y=x[:, 0] * 0.5)
    data = load_file(path)
    assert data.task == "regression" and data.num_classes is None and data.y_train.dtype == torch.float32


def test_csv_label_column_header_and_standardize(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,label,b\n1,0,2\n2,1,3\n3,0,4\n4,1,5\n5,0,6\n6,1,7\n7,0,8\n8,1,9\n")
    data = load_file(path, standardize=True)
    assert data.feature_names == ("a", "b") and data.input_shape == (2,)
    assert sorted(data.y_train.tolist() + data.y_test.tolist()) == [0, 0, 0, 0, 1, 1, 1, 1]
    assert torch.allclose(data.x_train.mean(0), torch.zeros(2), atol=1e-6)
    last = tmp_path / "last.csv"
    last.write_text("f1,f2,target\n1,2,0\n3,4,1\n5,6,1\n7,8,0\n")
    assert load_file(last).feature_names == ("f1", "f2")
    named = load_file(last, label_column="f1", task="regression")
    assert named.feature_names == ("f2", "target")


@pytest.mark.parametrize(
    "text, match",
    [
        ("1,2,0\n3,4,1\n", "needs a header row"),
        ("a,b,label\n1,x,0\n3,4,1\n", "column 'b' has the non-numeric value 'x' at line 2"),
        ("a,b,label\n1,,0\n3,4,1\n", "column 'b' is empty at line 2"),
        ("a,b,label\n1,2,0\n3,4\n", "line 3: 2 values but the header has 3 columns"),
        ("a,b,label\n", "no data rows"),
        ("", "is empty"),
        ("a,b,label\n1,2,cat\n3,4,dog\n", "column 'label' has the non-numeric value 'cat'"),
        ("a,b,label\n1,nan,0\n3,4,1\n", "NaN values"),
        ("a,b,label\n1,2,1\n3,4,2\n", "class\\(es\\) 0 never occur"),
        ("a,b,label\n\n1,2,0\n3,?,1\n", "column 'b' has the non-numeric value '\\?' at line 4"),  # blank lines count
    ],
)
def test_csv_errors(tmp_path, text, match):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=match):
        load_file(path)


def test_csv_unknown_label_column(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,b\n1,0\n2,1\n")
    with pytest.raises(DataError, match="no column 'y'; its columns are \\['a', 'b'\\]"):
        load_file(path, label_column="y")


def test_pt_dict_of_tensors(tmp_path):
    x, y = _toy(d=4)
    path = tmp_path / "data.pt"
    torch.save({"x": torch.from_numpy(x).reshape(40, 1, 2, 2), "y": torch.from_numpy(y)}, path)
    data = load_file(path)
    assert data.input_shape == (1, 2, 2) and data.num_classes == 2


class Payload:
    def __reduce__(self):
        return (print, ("executed",))


def test_pt_full_pickle_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"x": torch.zeros(4, 2), "y": Payload()}, path)
    with pytest.raises(UnsafeFileError, match="full pickle"):
        load_file(path)
    not_dict = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], not_dict)
    with pytest.raises(DataError, match="must hold a dict of tensors"):
        load_file(not_dict)


def test_npz_object_array_refused(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, x=np.array([{"a": 1}], dtype=object), y=np.array([0]))
    with pytest.raises(UnsafeFileError, match="Python objects"):
        load_file(path)


@pytest.mark.parametrize(
    "arrays, match",
    [
        ({"x": np.zeros((5, 2))}, "must contain arrays 'x' and 'y'; missing \\['y'\\]"),
        ({"x": np.zeros((5, 2)), "y": np.zeros(4)}, "'x' has 5 rows but 'y' has 4"),
        ({"x": np.zeros((0, 2)), "y": np.zeros(0)}, "no examples"),
        ({"x": np.zeros((4, 2)), "y": np.array([0, 1, 5, 1]), "x_test": np.zeros((2, 2))}, "only one of"),
        (
            {"x": np.zeros((4, 2)), "y": np.array([0, 1, 0, 1]), "x_test": np.zeros((2, 3)), "y_test": np.zeros(2)},
            "examples have shape",
        ),
        (
            {
                "x": np.zeros((4, 2)),
                "y": np.array([0, 1, 0, 1]),
                "x_test": np.zeros((2, 2)),
                "y_test": np.array([0, 2]),
            },
            "test labels range over 0..2",
        ),
        ({"x": np.zeros((4, 2)), "y": np.array([0, 1, 0, 1]), "mask": np.zeros((4, 3))}, "'mask' has shape"),
    ],
)
def test_npz_errors(tmp_path, arrays, match):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=match):
        load_file(path)


def test_path_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_file(tmp_path / "missing.npz")
    with pytest.raises(DataError, match="is a directory"):
        load_file(tmp_path)
    other = tmp_path / "data.json"
    other.write_text("{}")
    with pytest.raises(DataError, match="must end in .npz, .csv, .pt"):
        load_file(other)
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"garbage")
    with pytest.raises(DataError, match="Cannot read 'corrupt.npz'"):
        load_file(corrupt)
    with pytest.raises(InvalidParameterError, match="'task'"):
        load_file(corrupt, task="ranking")


def test_n_samples_subsamples_training_pool(tmp_path):
    x, y = _toy(n=100)
    path = tmp_path / "toy.npz"
    np.savez(path, x=x, y=y)
    data = load_file(path, n_samples=40)
    assert len(data.y_train) + len(data.y_test) == 40


_SPECIAL_FILES_SCRIPT = """
import sys
from deepscope.data.files import load_file
from deepscope.errors import DeepscopeError
for path in sys.argv[1:]:
    try:
        load_file(path)
        print("loaded", path)
    except DeepscopeError as error:
        print(type(error).__name__, error)
"""


def test_fifo_and_dev_zero_are_not_read(tmp_path):
    import os
    import subprocess
    import sys

    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    zero = tmp_path / "zero.pt"
    zero.symlink_to("/dev/zero")
    zero_npz = tmp_path / "zero.npz"
    zero_npz.symlink_to("/dev/zero")
    # a subprocess, so a regression hangs (FIFO) or fills memory (/dev/zero) there; the timeout only
    # turns such a hang into a failure, no duration is asserted
    result = subprocess.run(
        [sys.executable, "-c", _SPECIAL_FILES_SCRIPT, str(fifo), str(zero), str(zero_npz)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    lines = result.stdout.splitlines()
    assert len(lines) == 3, result.stderr
    assert lines[0].startswith("DataError Data file") and "not a regular file (it is a FIFO (named pipe))" in lines[0]
    assert all("not a regular file (it is a character device)" in line for line in lines[1:])


# ---- token ids for language models (issue 12): integer dtype kept, masks checked against one pad token
def _tokens(n=24, length=6, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, 50, (n, length))
    ids[::3, 4:] = 0  # right padding with id 0
    return ids, (ids != 0).astype(np.int64), np.arange(n) % 3


@pytest.mark.parametrize("suffix", [".npz", ".safetensors", ".pt"])
def test_token_ids_keep_their_integer_dtype_and_values(tmp_path, suffix):
    ids, mask, labels = _tokens()
    path = tmp_path / f"tokens{suffix}"
    arrays = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    if suffix == ".npz":
        np.savez(path, **arrays)
    elif suffix == ".pt":
        torch.save({k: torch.from_numpy(v) for k, v in arrays.items()}, path)
    else:
        from safetensors.numpy import save_file

        save_file(arrays, str(path))
    data = load_file(path, seed=0)
    assert data.x_train.dtype == torch.int64 and data.x_test.dtype == torch.int64
    assert data.input_shape == (6,) and data.num_classes == 3 and len(data.x_train) + len(data.x_test) == 24
    assert data.info["inputs"] == "token ids" and data.info["pad_token_id"] == 0
    rows = {row.tobytes(): label for row, label in zip(ids.astype(np.int64), labels)}
    for row, label in zip(data.x_test.numpy(), data.y_test.tolist()):  # the same rows, labels with them
        assert rows[row.tobytes()] == label


def test_token_ids_with_their_own_test_split_and_without_a_mask(tmp_path):
    ids, _, labels = _tokens()
    np.savez(tmp_path / "t.npz", input_ids=ids[:16], y=labels[:16], input_ids_test=ids[16:], y_test=labels[16:])
    data = load_file(tmp_path / "t.npz")
    assert torch.equal(data.x_test, torch.from_numpy(ids[16:])) and data.info["pad_token_id"] is None


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (
            lambda a: a.update(input_ids=a["input_ids"].astype(np.float32)),
            "must hold integer token ids; got dtype float32",
        ),
        (lambda a: a.update(input_ids=a["input_ids"][:, :, None]), "shape (n_examples, sequence_length)"),
        (lambda a: a["input_ids"].__setitem__((1, 1), -3), "negative id -3"),
        (lambda a: a.pop("labels"), "no 'labels' (or 'y')"),
        (lambda a: a.update(x=a["input_ids"]), "both 'x' and 'input_ids'"),
        (lambda a: a.update(attention_mask=a["attention_mask"][:, :3]), "must be 0/1 with the shape of the ids"),
        (lambda a: a["attention_mask"].__setitem__((2, slice(None)), 0), "masks every token of example 2"),
        (lambda a: a["attention_mask"].__setitem__((1, 0), 0), "marks different ids"),
        (lambda a: a["attention_mask"].__setitem__((0, 4), 1), "attends to the pad id 0"),
    ],
)
def test_bad_token_files_are_one_line_errors(tmp_path, change, words):
    ids, mask, labels = _tokens()
    arrays = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    change(arrays)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=re.escape(words)):
        load_file(tmp_path / "bad.npz")


def test_token_ids_cannot_be_standardised(tmp_path):
    ids, mask, labels = _tokens()
    np.savez(tmp_path / "t.npz", input_ids=ids, labels=labels)
    with pytest.raises(InvalidParameterError, match="'standardize'.*False for token ids"):
        load_file(tmp_path / "t.npz", standardize=True)
