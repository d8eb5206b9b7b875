"""``torch.export`` programs (``.pt2``, written by ``torch.export.save``): checked, then loaded as a module.

An exported program carries its own graph, so no architecture code is needed. But
``torch.export.load`` unpickles parts of the archive with ``weights_only=False`` (the weights or
constants saved "with pickle", custom and opaque objects, sample inputs that the weights-only
unpickler refuses) and loads the compiled native code of an AOTInductor package: a hostile
``.pt2`` runs code as surely as a pickle. So before torch sees the file, deepscope reads it once
into memory and checks, on those same bytes, that every entry torch would unpickle is a
weights-only pickle (tensors and plain containers: ``torch.load(weights_only=True)`` reads it) and
that the archive holds no custom objects, no opaque objects and no AOTInductor code. Anything else
is refused unless ``trust_pickle=True`` (CLI: ``--trust-pickle``), as for a full pickle.

A pickle that the weights-only unpickler reads names only allowlisted globals (tensor rebuild
functions, dtypes, containers), so the full unpickler that torch then runs on the same bytes calls
the same functions: the check is a sufficient condition, not a heuristic.

The program must take a dynamic batch dimension (``dynamic_shapes``): deepscope evaluates the model
on batches of many sizes, and a program exported with a fixed batch size fails on every other one,
so that is refused at load time with the re-export recipe. Tied weights (saved once by
``torch.export``, loaded as two Parameters over one storage) are made one Parameter again.
"""

from __future__ import annotations

import io
import json
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepscope.errors import DataError, UnsafeFileError

__all__ = ["load_exported", "SUFFIX"]

SUFFIX = ".pt2"


def load_exported(path: Path, *, trust_pickle: bool, map_location: str | torch.device) -> nn.Module:
    """The module of the ``torch.export`` program in ``path`` (flags set to eval; see the module docstring).

    Raises:
        DataError: not an export program, a damaged one, or one with a fixed batch size.
        UnsafeFileError: entries that would run code when loaded, without ``trust_pickle``.
    """
    data = path.read_bytes()  # checked and loaded from the same bytes: the file cannot change in between
    if not data.startswith(b"PK\x03\x04"):
        raise DataError(_not_a_program(path, f"it is not a zip archive (it starts with {data[:4]!r})"))
    names, read = _archive(path, data)
    if not trust_pickle:
        _check_entries(path, names, read)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.export.load(io.BytesIO(data))
        module = program.module()
    except Exception as error:  # torch raises RuntimeError, AssertionError, KeyError... on a damaged archive
        raise DataError(
            f"Cannot load the torch.export program '{path.name}' ({type(error).__name__}: {error})."
        ) from error
    _check_dynamic_batch(path, program)
    module = module.to(map_location)
    _retie(module)
    for submodule in module.modules():  # the graph fixed its semantics at export; .eval() is not supported
        object.__setattr__(submodule, "training", False)
    return module


def _retie(module: nn.Module) -> None:
    """Make parameters saved as one tensor (tied weights) one Parameter again.

    ``torch.export`` saves a tied tensor once, but loading gives each name its own Parameter over the
    same storage: gradients would split between them and every measure would count the tensor twice.
    """
    first: dict[tuple[Any, ...], nn.Parameter] = {}
    for name, parameter in list(module.named_parameters(remove_duplicate=False)):
        key = (parameter.untyped_storage().data_ptr(), parameter.storage_offset(), tuple(parameter.shape),
               parameter.stride(), parameter.dtype)  # fmt: skip
        if key not in first:
            first[key] = parameter
        elif first[key] is not parameter:
            owner_name, _, attribute = name.rpartition(".")
            setattr(module.get_submodule(owner_name), attribute, first[key])


def _not_a_program(path: Path, why: str) -> str:
    return f"'{path.name}' is not a torch.export program (torch.export.save writes one): {why}."


def _archive(path: Path, data: bytes) -> tuple[list[str], Any]:
    from torch.export.pt2_archive import constants

    try:
        reader = torch._C.PyTorchFileReader(io.BytesIO(data))
        names = list(reader.get_all_records())
        archive_format = (
            reader.get_record(constants.ARCHIVE_FORMAT_PATH).decode()
            if (constants.ARCHIVE_FORMAT_PATH in names)
            else None
        )
    except (RuntimeError, UnicodeDecodeError) as error:
        raise DataError(_not_a_program(path, f"its archive cannot be read ({error})")) from error
    if archive_format != constants.ARCHIVE_FORMAT_VALUE or not any(n.startswith(constants.MODELS_DIR) for n in names):
        found = "a TorchScript archive" if any("/code/" in n or n.startswith("code/") for n in names) else "no program"
        raise DataError(_not_a_program(path, f"the archive holds {found} (no '{constants.MODELS_DIR}*.json' entry)"))
    return names, reader.get_record


def _check_entries(path: Path, names: list[str], read: Any) -> None:
    """Refuse every entry that ``torch.export.load`` would unpickle fully or run as native code."""
    from torch.export.pt2_archive import constants

    if any(n.startswith(constants.AOTINDUCTOR_DIR) for n in names):
        raise _refusal(path, "it holds an AOTInductor package (compiled native code, loaded and run by torch)")
    models = [n[len(constants.MODELS_DIR) : -len(".json")] for n in names if n.startswith(constants.MODELS_DIR)]
    for model in models:
        for legacy in (f"{constants.WEIGHTS_DIR}{model}.pt", f"{constants.CONSTANTS_DIR}{model}.pt"):
            if legacy in names:
                _check_weights_only(path, legacy, read(legacy))
        for config_name, directory in (
            (constants.WEIGHTS_CONFIG_FILENAME_FORMAT.format(model), constants.WEIGHTS_DIR),
            (constants.CONSTANTS_CONFIG_FILENAME_FORMAT.format(model), constants.CONSTANTS_DIR),
        ):
            if config_name not in names:
                continue
            for entry in _payload_entries(path, read(config_name)):
                name = str(entry.get("path_name", ""))
                if name.startswith((constants.CUSTOM_OBJ_FILENAME_PREFIX, constants.OPAQUE_OBJ_FILENAME_PREFIX)):
                    raise _refusal(path, f"it holds a pickled Python object ('{name}')")
                if entry.get("use_pickle") and directory + name in names:
                    _check_weights_only(path, directory + name, read(directory + name))
        sample = constants.SAMPLE_INPUTS_FILENAME_FORMAT.format(model)
        if sample in names:
            _check_weights_only(path, sample, read(sample))


def _payload_entries(path: Path, raw: bytes) -> list[dict[str, Any]]:
    try:
        config = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise DataError(f"Cannot read the torch.export program '{path.name}': a payload config is not JSON.") from error
    entries = config.get("config") if isinstance(config, dict) else None
    if not isinstance(entries, dict):
        raise DataError(f"Cannot read the torch.export program '{path.name}': a payload config has no 'config' table.")
    return [entry for entry in entries.values() if isinstance(entry, dict)]


def _check_weights_only(path: Path, name: str, raw: bytes) -> None:
    try:
        torch.load(io.BytesIO(raw), weights_only=True, map_location="meta")
    except pickle.UnpicklingError as error:
        raise _refusal(path, f"its entry '{name}' is a full pickle") from error
    except Exception as error:  # noqa: BLE001 - damaged bytes: torch's own loader would fail on them too
        raise DataError(f"Cannot read entry '{name}' of the torch.export program '{path.name}' ({error}).") from error


def _refusal(path: Path, what: str) -> UnsafeFileError:
    return UnsafeFileError(
        f"Refusing to load '{path.name}': {what}, and loading it could execute arbitrary code. If you trust its "
        "source, pass trust_pickle=True (CLI: --trust-pickle)."
    )


def _check_dynamic_batch(path: Path, program: Any) -> None:
    """Refuse a program whose tensor inputs have a fixed first (batch) dimension."""
    users = set(program.graph_signature.user_inputs)
    for node in program.graph.nodes:
        value = node.meta.get("val") if node.op == "placeholder" and node.name in users else None
        if isinstance(value, torch.Tensor) and value.dim() > 0 and isinstance(value.shape[0], int):
            raise DataError(
                f"The torch.export program '{path.name}' was exported with a fixed batch size {value.shape[0]} "
                f"(input '{node.name}'); deepscope runs batches of other sizes. Re-export it with a dynamic batch: "
                f"torch.export.export(model, args, dynamic_shapes={{'{node.name}': {{0: torch.export.Dim('batch')}}}})."
            )
