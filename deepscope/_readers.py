"""Reading weight files without running their code: safetensors, TorchScript detection, state_dicts.

The pieces of :mod:`deepscope.io` that look inside a file: a safetensors file's tensors or just
their shapes (from the header, nothing loaded), whether a zip archive is TorchScript, where a
checkpoint keeps its ``state_dict``, and the one message that refuses a full pickle.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepscope.errors import DataError, UnsafeFileError

__all__ = ["NESTED_KEYS", "find_state_dict", "is_torchscript", "read_safetensors", "refusal", "safetensors_shapes"]

NESTED_KEYS = ("state_dict", "model_state_dict", "model", "net", "module", "weights")
"""Where training scripts usually keep the weights inside a checkpoint dict, looked at in this order."""


def read_safetensors(path: Path, map_location: str | torch.device) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path, device=str(map_location))
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise DataError(f"Cannot read '{path.name}' as safetensors: {error}") from error


def safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """The name and shape of every tensor in a safetensors file, from its header (no tensor is read)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            return {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise DataError(f"Cannot read '{path.name}' as safetensors: {error}") from error


def is_torchscript(path: Path) -> bool:
    """TorchScript archives are zips holding ``<name>/constants.pkl`` and ``<name>/code/``."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    return any(n.endswith("constants.pkl") for n in names) and any("/code/" in n for n in names)


def refusal(path: Path, error: Exception) -> UnsafeFileError:
    found = re.search(r"GLOBAL ([\w.]+)", str(error))
    what = f"it is a full pickle that imports {found.group(1)}" if found else "it is not a weights-only file"
    return UnsafeFileError(
        f"Refusing to load '{path.name}': {what}, and unpickling it could execute arbitrary code. "
        "If you trust its source, pass trust_pickle=True (CLI: --trust-pickle); better, re-save it "
        "with deepscope.io.save_model (safetensors)."
    )


def find_state_dict(loaded: Any) -> dict[str, torch.Tensor] | nn.Module | None:
    if not isinstance(loaded, Mapping):
        return None
    if loaded and all(isinstance(v, torch.Tensor) for v in loaded.values()):
        return {str(k): v for k, v in loaded.items()}
    for key in NESTED_KEYS:
        inner = loaded.get(key)
        if isinstance(inner, nn.Module):
            return inner
        if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
            return {str(k): v for k, v in inner.items()}
    return None
