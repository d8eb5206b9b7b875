"""User data files: ``.npz``, ``.pt`` and ``.safetensors`` (keys x, y[, x_test, y_test]) and ``.csv``.

Nothing here can execute code from the file: ``.npz`` is read with ``allow_pickle=False``, ``.pt``
with ``torch.load(weights_only=True)`` and ``.safetensors`` with safetensors; a file that needs full
unpickling is refused. Only regular files are read: a FIFO, a device such as ``/dev/zero`` or a
socket is refused as "not a regular file".

Token data for language models: instead of ``x``, integer ``input_ids`` ``(n, L)`` (with
``labels`` or ``y``, optionally ``attention_mask``, and ``input_ids_test``/``labels_test``/
``attention_mask_test``). The ids keep their integer dtype (int64), never cast to float. The
attention mask must be the padding of the ids (0 exactly where the id is one pad token): the
model rebuilds it from that token (see :class:`deepscope._hf.Logits`), and the pad token found is
recorded as ``info["pad_token_id"]`` so that a model with another pad token is refused.
"""

from __future__ import annotations

import csv
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepscope._files import check_regular_file
from deepscope.data._base import DatasetSplits
from deepscope.data._checks import (
    as_inputs,
    as_labels,
    check_n_samples,
    check_seed,
    check_test_fraction,
    infer_task,
    standardise,
    stratified_split,
    subsample,
)
from deepscope.errors import DataError, UnsafeFileError, invalid_parameter

__all__ = ["load_file", "SUFFIXES"]

SUFFIXES = (".npz", ".csv", ".pt", ".safetensors")
_OWNER = "deepscope.datasets.load"


def load_file(
    path: str | Path,
    *,
    seed: int = 0,
    n_samples: int | None = None,
    test_fraction: float = 0.25,
    label_column: str | None = None,
    task: str | None = None,
    num_classes: int | None = None,
    standardize: bool = False,
) -> DatasetSplits:
    """Load a user dataset from ``.npz``, ``.pt`` or ``.csv`` into train/test splits.

    - ``.npz``: arrays ``x`` ``(n, *features)`` and ``y`` ``(n,)``, optionally ``x_test``/``y_test``
      and ground-truth masks ``mask``/``mask_test`` shaped like ``x``.
    - ``.pt``: a dict of tensors with the same keys, read with ``torch.load(weights_only=True)``.
    - ``.csv``: a header row, numeric cells; the label is column ``label_column`` (by default the
      column named "label", else the last column); every other column is a feature.

    Without a test split, a seeded split (stratified by class for classification) holds out
    ``test_fraction`` of the rows. The task is inferred (integer-valued 1-D labels: classification,
    anything else: regression) unless ``task`` is given; class labels must be the integers 0..C-1.

    Args:
        path: the file.
        seed: seed of the subsample and the split.
        n_samples: keep a seeded (stratified) subset of this many training-pool rows.
        test_fraction: share held out when the file has no test split.
        label_column: name of the CSV label column (default: "label", else the last column); only
            a CSV file takes it (``.npz`` and ``.pt`` files name their arrays ``x`` and ``y``).
        task: "classification", "regression" or None (infer).
        num_classes: number of classes, when some classes are absent from the file.
        standardize: scale features to zero mean and unit variance with train statistics.

    Returns:
        DatasetSplits named after the file.

    Example:
        >>> import numpy as np, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "toy.npz")
        >>> np.savez(path, x=np.random.rand(20, 3), y=np.arange(20) % 2)
        >>> load_file(path).num_classes
        2
    """
    path = Path(path).expanduser()
    seed = check_seed(seed, _OWNER)
    test_fraction = check_test_fraction(test_fraction, _OWNER)
    n_samples = check_n_samples(n_samples, _OWNER)
    if task is not None and task not in ("classification", "regression"):
        raise invalid_parameter("task", _OWNER, "one of 'classification', 'regression' or None", task)
    if label_column is not None and (not isinstance(label_column, str) or not label_column):
        raise invalid_parameter("label_column", _OWNER, "a column name (a non-empty str)", label_column)
    if not isinstance(standardize, bool):
        raise invalid_parameter("standardize", _OWNER, "a bool", standardize)
    if path.is_dir():
        raise DataError(f"'{path}' is a directory; give a data file ending in {', '.join(SUFFIXES)}.")
    check_regular_file(path, "Data file")  # a FIFO would hang the reader, /dev/zero never ends
    suffix = path.suffix.lower()
    if label_column is not None and suffix != ".csv":
        raise invalid_parameter(
            "label_column",
            _OWNER,
            f"None for a {suffix or 'suffix-less'} file (only a CSV file has columns)",
            label_column,
        )
    feature_names = None
    if suffix == ".csv":
        arrays = _read_csv(path, "label" if label_column is None else label_column)
        feature_names = arrays.pop("feature_names")
    elif suffix == ".npz":
        arrays = _read_npz(path)
    elif suffix == ".pt":
        arrays = _read_pt(path)
    elif suffix == ".safetensors":
        arrays = _read_safetensors(path)
    else:
        raise DataError(f"Cannot read '{path.name}': data files must end in {', '.join(SUFFIXES)}.")
    return _to_splits(path, arrays, feature_names, seed, n_samples, test_fraction, task, num_classes, standardize)


def _to_splits(
    path: Path,
    arrays: dict[str, Any],
    feature_names: tuple[str, ...] | None,
    seed: int,
    n_samples: int | None,
    test_fraction: float,
    task: str | None,
    num_classes: int | None,
    standardize: bool,
) -> DatasetSplits:
    source = f"Data file '{path.name}'"
    pad_token_id, tokens = None, "input_ids" in arrays
    if tokens:
        if standardize:
            raise invalid_parameter("standardize", _OWNER, "False for token ids (input_ids)", standardize)
        arrays, pad_token_id = _token_arrays(arrays, source)
    missing = [key for key in ("x", "y") if key not in arrays]
    if missing:
        raise DataError(f"{source} must contain arrays 'x' and 'y'; missing {missing}, found {sorted(arrays)}.")
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise DataError(f"{source} has only one of 'x_test' and 'y_test'; give both or neither.")
    inputs = _as_ids if tokens else as_inputs
    x = inputs(arrays["x"], source, "train").numpy()
    task = task or infer_task(arrays["y"])
    y, classes = as_labels(arrays["y"], source, task, num_classes=num_classes, split="train")
    y = y.numpy()
    if len(x) != len(y):
        raise DataError(f"{source}: 'x' has {len(x)} rows but 'y' has {len(y)}; they must match.")
    mask = _mask(arrays.get("mask"), x, source, "mask")
    stratify = y if task == "classification" else None
    if n_samples is not None and n_samples < len(y):
        keep = subsample(stratify, len(y), n_samples, seed)
        x, y, mask = x[keep], y[keep], None if mask is None else mask[keep]
        stratify = y if task == "classification" else None
    if "x_test" in arrays:
        x_test = inputs(arrays["x_test"], source, "test").numpy()
        y_test, _ = as_labels(arrays["y_test"], source, task, num_classes=classes or num_classes, split="test")
        y_test = y_test.numpy()
        if len(x_test) != len(y_test):
            raise DataError(f"{source}: 'x_test' has {len(x_test)} rows but 'y_test' has {len(y_test)}.")
        if x_test.shape[1:] != x.shape[1:]:
            raise DataError(
                f"{source}: 'x_test' examples have shape {x_test.shape[1:]} but 'x' examples have {x.shape[1:]}."
            )
        mask_test = _mask(arrays.get("mask_test"), x_test, source, "mask_test")
        x_train, y_train, mask_train = x, y, mask
        held_out = "the file's own test split"
    else:
        if len(y) < 2:
            raise DataError(f"{source} has {len(y)} example; at least 2 are needed to make a test split.")
        train, test = stratified_split(stratify, len(y), test_fraction, seed)
        x_train, y_train, x_test, y_test = x[train], y[train], x[test], y[test]
        mask_train, mask_test = (None, None) if mask is None else (mask[train], mask[test])
        held_out = f"a seeded split (seed {seed}, test_fraction {test_fraction})"
    if (mask_train is None) != (mask_test is None):
        mask_train = mask_test = None  # ground truth for one split only is not usable as ground truth
    info: dict[str, Any] = {"path": str(path), "seed": seed}
    if tokens:
        info.update(inputs="token ids", pad_token_id=pad_token_id)
    if standardize:
        flat_train, flat_test, info["standardisation"] = standardise(
            x_train.reshape(len(x_train), -1), x_test.reshape(len(x_test), -1)
        )
        x_train, x_test = flat_train.reshape(x_train.shape), flat_test.reshape(x_test.shape)
    tensor = lambda a: None if a is None else torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    return DatasetSplits(
        name=path.stem,
        x_train=tensor(x_train),
        y_train=tensor(y_train),
        x_test=tensor(x_test),
        y_test=tensor(y_test),
        task=task,
        num_classes=classes,
        mask_train=tensor(mask_train),
        mask_test=tensor(mask_test),
        feature_names=feature_names,
        description=f"User file {path.name}: {len(y_train)} train / {len(y_test)} test examples; test is {held_out}.",
        info=info,
    )


def _token_arrays(arrays: dict[str, Any], source: str) -> tuple[dict[str, Any], int | None]:
    """``input_ids``/``labels``/``attention_mask`` (and ``_test``) as x/y; the pad token the masks imply."""
    if "x" in arrays:
        raise DataError(f"{source} has both 'x' and 'input_ids'; give one kind of inputs.")
    renamed: dict[str, Any] = {}
    pads: set[int] = set()
    for suffix in ("", "_test"):
        if f"input_ids{suffix}" not in arrays:
            continue
        ids = _as_ids(arrays[f"input_ids{suffix}"], source, f"input_ids{suffix}").numpy()
        labels = next((arrays[k + suffix] for k in ("labels", "y") if k + suffix in arrays), None)
        if labels is None:
            raise DataError(f"{source} has 'input_ids{suffix}' but no 'labels{suffix}' (or 'y{suffix}').")
        renamed[f"x{suffix}"], renamed[f"y{suffix}"] = ids, labels
        if f"attention_mask{suffix}" in arrays:
            pads |= _padding(ids, np.asarray(arrays[f"attention_mask{suffix}"]), source, suffix)
    if len(pads) > 1:
        raise DataError(f"{source}: the attention masks mark ids {sorted(pads)} as padding; one pad token is expected.")
    return renamed, (next(iter(pads)) if pads else None)


def _as_ids(value: Any, source: str, key: str) -> torch.Tensor:
    array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    if not np.issubdtype(array.dtype, np.integer):
        raise DataError(f"{source}: '{key}' must hold integer token ids; got dtype {array.dtype}.")
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise DataError(f"{source}: '{key}' must have shape (n_examples, sequence_length); got {tuple(array.shape)}.")
    if array.min() < 0:
        raise DataError(f"{source}: '{key}' holds the negative id {int(array.min())}; token ids are >= 0.")
    return torch.from_numpy(np.ascontiguousarray(array.astype(np.int64)))


def _padding(ids: np.ndarray, mask: np.ndarray, source: str, suffix: str) -> set[int]:
    """The pad ids an attention mask implies; it must be exactly the positions holding them."""
    key = f"attention_mask{suffix}"
    if mask.shape != ids.shape or not np.isin(mask, (0, 1)).all():
        raise DataError(f"{source}: '{key}' must be 0/1 with the shape of the ids {ids.shape}; got {mask.shape}.")
    if (mask.sum(axis=1) == 0).any():
        row = int(np.flatnonzero(mask.sum(axis=1) == 0)[0])
        raise DataError(f"{source}: '{key}' masks every token of example {row}.")
    pads = {int(v) for v in np.unique(ids[mask == 0])}
    if len(pads) > 1:
        raise DataError(
            f"{source}: '{key}' marks different ids {sorted(pads)[:5]} as padding; one pad token is expected."
        )
    if pads and (ids[mask == 1] == next(iter(pads))).any():
        raise DataError(
            f"{source}: '{key}' attends to the pad id {next(iter(pads))} somewhere; the mask must be 0 exactly where "
            "the ids are padding (the model rebuilds it from the pad token)."
        )
    return pads


def _read_safetensors(path: Path) -> dict[str, Any]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return dict(load_file(path, device="cpu"))
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise DataError(f"Cannot read '{path.name}' as safetensors: {error}") from error


def _mask(value: Any, x: np.ndarray, source: str, key: str) -> np.ndarray | None:
    if value is None:
        return None
    mask = as_inputs(value, source, key).numpy()
    if mask.shape != x.shape:
        raise DataError(f"{source}: '{key}' has shape {mask.shape} but must be shaped like its inputs {x.shape}.")
    return mask


def _read_npz(path: Path) -> dict[str, Any]:
    if not zipfile.is_zipfile(path):  # np.load would otherwise try to read it as a pickle
        raise DataError(f"Cannot read '{path.name}' as .npz: it is not a NumPy .npz (zip) archive.")
    try:
        with np.load(path, allow_pickle=False) as stored:
            return {key: stored[key] for key in stored.files}
    except ValueError as error:
        if "allow_pickle" in str(error):
            raise UnsafeFileError(
                f"'{path.name}' stores Python objects that only unpickling (which can run arbitrary code) could "
                "read; save plain numeric arrays instead (np.savez(path, x=x, y=y))."
            ) from error
        raise DataError(f"Cannot read '{path.name}' as .npz: {error}") from error
    except (OSError, zipfile.BadZipFile, EOFError) as error:
        raise DataError(f"Cannot read '{path.name}' as .npz ({type(error).__name__}: {error}).") from error


def _read_pt(path: Path) -> dict[str, Any]:
    try:
        loaded = torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as error:
        raise UnsafeFileError(
            f"'{path.name}' is a full pickle: loading it could execute arbitrary code, so deepscope refuses it. "
            "Save the data as a dict of tensors instead: torch.save({'x': x, 'y': y}, path)."
        ) from error
    except (RuntimeError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise DataError(f"Cannot read '{path.name}' with torch.load ({type(error).__name__}: {error}).") from error
    if not isinstance(loaded, dict):
        raise DataError(
            f"'{path.name}' must hold a dict of tensors with keys 'x', 'y'[, 'x_test', 'y_test']; "
            f"got {type(loaded).__name__}."
        )
    return {str(key): value for key, value in loaded.items()}


def _read_csv(path: Path, label_column: str) -> dict[str, Any]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as stream:
            reader = csv.reader(stream)
            numbered = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"Cannot read '{path.name}' as CSV ({type(error).__name__}: {error}).") from error
    if not numbered:
        raise DataError(f"CSV file '{path.name}' is empty.")
    rows = [row for _, row in numbered]
    header = [cell.strip() for cell in rows[0]]
    if all(_is_number(cell) for cell in header):
        raise DataError(
            f"CSV file '{path.name}' needs a header row naming its columns; the first row is all numbers ({rows[0][:4]}...)."
        )
    if len(header) < 2:
        raise DataError(f"CSV file '{path.name}' needs at least one feature column and one label column.")
    if label_column in header:
        label_index = header.index(label_column)
    elif label_column == "label":
        label_index = len(header) - 1
    else:
        raise DataError(f"CSV file '{path.name}' has no column '{label_column}'; its columns are {header}.")
    body = rows[1:]
    if not body:
        raise DataError(f"CSV file '{path.name}' has a header but no data rows.")
    try:  # fast path: numpy parses every cell; on any problem the slow path below names the culprit
        values = np.array(body, dtype=np.float64)
        if values.shape != (len(body), len(header)):
            raise ValueError("ragged rows")
    except ValueError:
        values = _parse_cells(path.name, header, numbered[1:])
    features = [i for i in range(len(header)) if i != label_index]
    return {
        "x": values[:, features],
        "y": values[:, label_index],
        "feature_names": tuple(header[i] for i in features),
    }


def _parse_cells(file_name: str, header: list[str], numbered: list[tuple[int, list[str]]]) -> np.ndarray:
    """Parse cell by cell, raising a DataError that names the line and column of the first bad cell."""
    values = np.empty((len(numbered), len(header)), dtype=np.float64)
    for index, (line, row) in enumerate(numbered):
        if len(row) != len(header):
            raise DataError(
                f"CSV file '{file_name}', line {line}: {len(row)} values but the header has {len(header)} columns."
            )
        for column, cell in enumerate(row):
            text = cell.strip()
            try:
                values[index, column] = float(text)
            except ValueError:
                what = "is empty" if not text else f"has the non-numeric value {text[:30]!r}"
                raise DataError(
                    f"CSV file '{file_name}': column '{header[column]}' {what} at line {line}; "
                    "every feature and label must be a number (encode categories as integers 0..C-1)."
                ) from None
    return values


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
