"""The deepscope command line (cli/_app.py): one-line errors with exit 2, and the happy paths of audit,
the section commands, train and demo. ``deepscope explain`` is tested in test_explain.py, ``deepscope
sweep`` in test_sweep.py, ``deepscope experiment`` in test_experiment.py."""

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import deepscope
from deepscope.report import SECTIONS, Section, Text, register_section
from tests.cli.conftest import assert_one_line_error, run_cli


def _quick_section(context):
    return Section(summary=f"Quick look at {len(context.problem.train)} examples.", blocks=[Text("ok")])


@pytest.fixture
def quick_section():
    register_section("zz_cli_quick", title="CLI quick", order=1001)(_quick_section)
    yield "zz_cli_quick"
    SECTIONS.pop("zz_cli_quick", None)


def test_version_and_help():
    code, stdout, stderr = run_cli("--version")
    assert (code, stdout.strip(), stderr) == (0, f"deepscope {deepscope.__version__}", "")
    code, stdout, _ = run_cli("--help")
    assert code == 0
    for command in ("demo", "train", "audit"):
        assert command in stdout
    code, stdout, _ = run_cli()
    assert code == 0 and "Usage: deepscope" in stdout
    code, stdout, _ = run_cli("audit", "--help")
    assert code == 0 and "--trust-pickle" in stdout and "--sections" in stdout


def test_section_commands_come_from_the_registry(quick_section):
    code, stdout, _ = run_cli("--help")
    assert code == 0 and quick_section in stdout
    code, stdout, _ = run_cli(quick_section, "--help")
    assert code == 0 and "CLI quick" in stdout and "--sections" not in stdout
    assert run_cli("zz-cli-quick", "--help")[0] == 0  # hyphens work too


def test_missing_model_file(tmp_path):
    assert_one_line_error(run_cli("audit", "--model", tmp_path / "nope.safetensors", "--data", "digits"), "nope")


def test_unknown_dataset(files):
    line = assert_one_line_error(run_cli("audit", "--model", files["model"], "--data", "no_such_set"), "no_such_set")
    assert "digits" in line  # says what is available


def test_shape_mismatch(files, tmp_path):
    line = assert_one_line_error(
        run_cli("audit", "--model", files["model"], "--data", "digits", "--out", tmp_path / "r"), "shape"
    )
    assert "(1, 8, 8)" in line
    assert not (tmp_path / "r").exists()


def test_pickle_checkpoint_needs_trust_pickle(files, tmp_path):
    result = run_cli("audit", "--model", files["pickle"], "--data", files["data"], "--out", tmp_path / "r")
    assert_one_line_error(result, "--trust-pickle" if "--trust-pickle" in result[2] else "trust_pickle")


@pytest.mark.parametrize(("kind", "fragment"), [("nan", "NaN"), ("labels", "abel"), ("empty", "empty")])
def test_bad_data_files(files, tmp_path, kind, fragment):
    result = run_cli("audit", "--model", files["model"], "--data", files[kind], "--out", tmp_path / "r")
    assert_one_line_error(result, fragment)


def test_usage_mistakes_are_one_line():
    assert_one_line_error(run_cli("audit", "--modle", "m.pt"), "--modle")
    assert_one_line_error(run_cli("audit"), "--model")
    assert_one_line_error(run_cli("no_such_command"), "no_such_command")
    assert_one_line_error(run_cli("demo", "--epochs", "0"), "--epochs")


def test_unknown_section_is_refused_before_loading(files, tmp_path, quick_section):
    result = run_cli("audit", "--model", files["model"], "--data", files["data"], "--sections", "zz_cli_quick,nope")
    line = assert_one_line_error(result, "nope")
    assert quick_section in line  # lists the valid keys


def test_audit_writes_the_report(files, tmp_path, quick_section):
    out = tmp_path / "report"
    code, stdout, stderr = run_cli(
        "audit", "--model", files["model"], "--data", files["data"], "--out", out, "--sections", quick_section
    )
    assert code == 0, stderr
    assert f"report:  {(out / 'report.html').absolute()}" in stdout
    results = json.loads((out / "results.json").read_text())
    assert list(results["sections"]) == [quick_section]
    assert results["sections"][quick_section]["summary"] == "Quick look at 30 examples."  # 40 * 0.75 train split
    assert results["model_name"] == "model.safetensors"
    # A second run replaces deepscope's own files; a file the user wrote is refused in one line.
    assert (
        run_cli("audit", "--model", files["model"], "--data", files["data"], "--out", out, "--sections", quick_section)[
            0
        ]
        == 0
    )
    (out / "report.html").write_text("my notes")
    result = run_cli(
        "audit", "--model", files["model"], "--data", files["data"], "--out", out, "--sections", quick_section
    )
    assert_one_line_error(result, "--overwrite")
    assert (out / "report.html").read_text() == "my notes"


def test_section_command_runs_that_section_and_the_model_card(files, tmp_path, quick_section):
    out = tmp_path / "one"
    code, _, stderr = run_cli(quick_section, "--model", files["model"], "--data", files["data"], "--out", out)
    assert code == 0, stderr
    keys = list(json.loads((out / "results.json").read_text())["sections"])
    assert keys == (["model_card", quick_section] if "model_card" in SECTIONS else [quick_section])


def test_internal_error_is_one_line_and_debug_shows_the_traceback(files, tmp_path, quick_section, monkeypatch):
    audit_module = importlib.import_module("deepscope.report.audit")  # the package exports a function of that name

    def broken(*args, **kwargs):
        raise RuntimeError("something deep broke")

    monkeypatch.setattr(audit_module, "audit", broken)
    arguments = ("audit", "--model", files["model"], "--data", files["data"], "--out", tmp_path / "r")
    line = assert_one_line_error(run_cli(*arguments), "internal error: RuntimeError: something deep broke", code=1)
    assert "--debug" in line
    code, _, stderr = run_cli(*arguments, "--debug")
    assert code == 1 and "Traceback (most recent call last)" in stderr and "something deep broke" in stderr


def test_train_then_audit_with_history(files, tmp_path, quick_section):
    out = tmp_path / "run"
    code, stdout, stderr = run_cli(
        "train", "--data", files["data"], "--arch", "mlp", "--epochs", "2", "--out", out, "--seed", "1"
    )
    assert code == 0, stderr
    record = json.loads((out / "history.json").read_text())
    assert record["generator"] == "deepscope" and record["history"]["epoch"] == [0, 1, 2]  # 0 = initial weights
    assert (out / "model.safetensors").exists() and (out / "init.safetensors").exists()
    assert "next:    deepscope audit" in stdout
    code, _, stderr = run_cli(
        "audit", "--model", out / "model.safetensors", "--data", files["data"], "--history", out / "history.json",
        "--init", out / "init.safetensors", "--out", out / "report", "--sections", quick_section,
    )  # fmt: skip
    assert code == 0, stderr
    # The audit reuses the training seed, so its test split is the one the model never saw.
    results = json.loads((out / "report" / "results.json").read_text())
    assert results["seed"] == 1
    wrong_seed = ("audit", "--model", out / "model.safetensors", "--data", files["data"], "--history")
    assert_one_line_error(run_cli(*wrong_seed, out / "history.json", "--seed", "0"), "--seed 0 differs from the seed 1")
    # Training again into the same directory replaces deepscope's own files; a foreign file is refused.
    assert run_cli("train", "--data", files["data"], "--epochs", "1", "--out", out)[0] == 0
    other = tmp_path / "other"
    other.mkdir()
    (other / "model.safetensors").write_bytes(b"mine")
    assert_one_line_error(run_cli("train", "--data", files["data"], "--epochs", "1", "--out", other), "--overwrite")


def test_subprocess_entry_point_reports_one_line(tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "default"}
    completed = subprocess.run(
        [sys.executable, "-m", "deepscope", "audit", "--model", str(tmp_path / "missing.pt"), "--data", "digits"],
        capture_output=True, text=True, timeout=120, env=env, cwd=Path(__file__).parent,
    )  # fmt: skip
    assert completed.returncode == 2
    assert completed.stdout == ""
    lines = completed.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "missing.pt" in lines[0], completed.stderr


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    code, stdout, stderr = run_cli("demo", "--out", out, "--epochs", "3")
    assert code == 0, stderr
    assert f"report:  {(out / 'report.html').absolute()}" in stdout
    results = json.loads((out / "results.json").read_text())
    failed = {key: entry.get("error") for key, entry in results["sections"].items() if entry["status"] != "ok"}
    assert failed == {}
    assert set(results["sections"]) == set(SECTIONS)
    assert results["dataset"]["name"] == "digits"
