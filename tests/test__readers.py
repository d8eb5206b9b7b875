"""Looking inside weight files without running them: safetensors, TorchScript, state_dict locations."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from deepscope._readers import (
    NESTED_KEYS,
    find_state_dict,
    is_torchscript,
    read_safetensors,
    refusal,
    safetensors_shapes,
)
from deepscope.errors import DataError, UnsafeFileError


def test_safetensors_tensors_and_header_shapes(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file({"a.weight": torch.ones(2, 3), "b": torch.zeros(4)}, str(path))
    assert safetensors_shapes(path) == {"a.weight": (2, 3), "b": (4,)}
    tensors = read_safetensors(path, "cpu")
    assert torch.equal(tensors["a.weight"], torch.ones(2, 3))
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}")
    for reader in (safetensors_shapes, lambda p: read_safetensors(p, "cpu")):
        with pytest.raises(DataError, match="Cannot read 'broken.safetensors' as safetensors"):
            reader(broken)


def test_torchscript_is_told_from_a_plain_checkpoint(tmp_path):
    scripted, plain, text = tmp_path / "m.ts", tmp_path / "m.pt", tmp_path / "m.txt"
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(scripted))
    torch.save(torch.nn.Linear(2, 2).state_dict(), plain)
    text.write_text("hello")
    assert is_torchscript(scripted) and not is_torchscript(plain) and not is_torchscript(text)


def test_find_state_dict_looks_at_the_top_and_the_usual_keys():
    weights = {"w": torch.ones(1)}
    assert find_state_dict(weights) == weights
    assert find_state_dict({"epoch": 3, "model_state_dict": weights}) == weights
    module = torch.nn.Linear(1, 1)
    assert find_state_dict({"model": module}) is module
    assert find_state_dict({"epoch": 3}) is None and find_state_dict([weights]) is None and find_state_dict({}) is None
    assert NESTED_KEYS[0] == "state_dict"


def test_refusal_names_what_the_pickle_imports():
    path = Path("evil.pt")
    error = refusal(path, pickle.UnpicklingError("Unsupported global: GLOBAL os.system"))
    assert isinstance(error, UnsafeFileError) and "'evil.pt'" in str(error)
    assert "it is a full pickle that imports os.system" in str(error) and "trust_pickle=True" in str(error)
    assert "it is not a weights-only file" in str(refusal(path, pickle.UnpicklingError("other")))
