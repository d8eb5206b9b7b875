"""Shared by the CLI's tests: run the CLI in-process, check a one-line error, and a set of saved files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from deepscope.cli import main


def run_cli(*args: str) -> tuple[int, str, str]:
    """Run ``deepscope ARGS`` in-process with CliRunner's captured streams; (exit code, stdout, stderr)."""
    runner = CliRunner()
    with runner.isolation() as (stdout, stderr, _):
        code = main([str(arg) for arg in args])
    return code, stdout.getvalue().decode(), stderr.getvalue().decode()


def assert_one_line_error(result: tuple[int, str, str], fragment: str, code: int = 2) -> str:
    exit_code, _, stderr = result
    lines = stderr.splitlines()
    assert exit_code == code, stderr
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr and "Usage:" not in stderr
    assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def files(tmp_path):
    """A saved 4-feature, 3-class MLP, a matching .npz data file and a few broken ones."""
    from deepscope.io import save_model
    from deepscope.models import build

    torch.manual_seed(0)
    model = build("mlp", (4,), 3)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4)).astype(np.float32)
    y = rng.integers(0, 3, size=40)
    paths = {"model": save_model(model, tmp_path / "model.safetensors"), "data": tmp_path / "data.npz"}
    np.savez(paths["data"], x=x, y=y)
    nan_x = x.copy()
    nan_x[3, 1] = np.nan
    paths["nan"] = tmp_path / "nan.npz"
    np.savez(paths["nan"], x=nan_x, y=y)
    paths["labels"] = tmp_path / "labels.npz"
    np.savez(paths["labels"], x=x, y=np.arange(40) % 10)  # 10 classes for a model with 3 outputs
    paths["empty"] = tmp_path / "empty.npz"
    np.savez(paths["empty"], x=np.zeros((0, 4), np.float32), y=np.zeros((0,), np.int64))
    paths["pickle"] = tmp_path / "pickled.pt"
    torch.save(model, paths["pickle"])  # a full pickle of the module object
    return paths
