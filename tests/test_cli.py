"""Tests for the deepscope command line: one-line errors with exit 2, and the happy paths."""

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import deepscope
from deepscope.cli import main
from deepscope.report import SECTIONS, Section, Text, register_section


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


def _quick_section(context):
    return Section(summary=f"Quick look at {len(context.problem.train)} examples.", blocks=[Text("ok")])


@pytest.fixture
def quick_section():
    register_section("zz_cli_quick", title="CLI quick", order=1001)(_quick_section)
    yield "zz_cli_quick"
    SECTIONS.pop("zz_cli_quick", None)


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


# ----------------------------------------------------------------------------------- deepscope explain
def _strict_json(path: Path) -> dict:
    def refuse(constant: str) -> None:
        raise ValueError(f"non-strict JSON constant {constant}")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


def test_explain_writes_table_json_svgs_and_html(files, tmp_path):
    from deepscope.attribution import check_axioms, integrated_gradients
    from deepscope.datasets import load
    from deepscope.io import load_model
    from deepscope.report.html import GENERATOR_META

    out = tmp_path / "explain"
    code, stdout, stderr = run_cli(
        "explain",
        "--model",
        files["model"],
        "--data",
        files["data"],
        "--method",
        "ig",
        "--index",
        "0..1,4",
        "--out",
        out,
    )
    assert code == 0, stderr
    lines = stdout.splitlines()
    assert lines[0].startswith("integrated_gradients on 3 test example(s)")
    assert lines[1].split()[:5] == ["index", "label", "predicted", "target", "completeness_error"]
    assert [line.split()[0] for line in lines[2:5]] == ["0", "1", "4"]
    assert lines[5].startswith("axioms:  completeness ")
    assert f"report:  {(out / 'explain.html').absolute()}" in stdout

    # oracle: the same library calls on the same test rows (same seed, same split) give the same numbers
    dataset = load(str(files["data"]), seed=0)
    model = load_model(files["model"])
    inputs = dataset.x_test[[0, 1, 4]]
    expected = integrated_gradients(model, inputs, steps=None, tol=0.01)  # the CLI asks for adaptive steps
    record = _strict_json(out / "explain.json")
    assert (
        record["generator"] == "deepscope" and record["split"] == "test" and record["method"] == "integrated_gradients"
    )
    assert [row["index"] for row in record["examples"]] == [0, 1, 4]
    assert [row["label"] for row in record["examples"]] == dataset.y_test[[0, 1, 4]].tolist()
    assert [row["target"] for row in record["examples"]] == expected.target.tolist()
    # the same deterministic computation in the same process: equal up to float32 rounding
    torch.testing.assert_close(torch.tensor(record["attribution"]["values"]), expected.values, rtol=1e-6, atol=1e-7)
    axioms = check_axioms(model, inputs, expected.target, method="integrated_gradients", steps=None, tol=0.01)
    assert [c["status"] for c in record["axioms"]["checks"]] == [c["status"] for c in axioms.checks]

    assert record["figures"] == ["example-0.svg", "example-1.svg", "example-4.svg"]
    for name in record["figures"]:
        text = (out / name).read_text(encoding="utf-8")
        assert text.startswith("<!-- generator: deepscope -->\n<svg")
    page = (out / "explain.html").read_text(encoding="utf-8")
    assert GENERATOR_META in page and page.count("<svg") == 3
    assert "http" not in page and "src=" not in page  # self-contained: no external URL at all

    # a second run may replace what deepscope wrote
    assert run_cli("explain", "--model", files["model"], "--data", files["data"], "--index", "0", "--out", out)[0] == 0


def test_explain_aliases_target_and_train_fallback(files, tmp_path, monkeypatch):
    import dataclasses

    import deepscope.cli.explain as cli_module

    out = tmp_path / "explain"
    code, stdout, stderr = run_cli(
        "explain", "--model", files["model"], "--data", files["data"], "--method", "Input-X-Gradient",
        "--index", "2", "--target", "1", "--out", out,
    )  # fmt: skip
    assert code == 0, stderr
    record = _strict_json(out / "explain.json")
    assert record["method"] == "input_x_gradient" and record["examples"][0]["target"] == 1

    load_dataset = cli_module._load_dataset

    def without_test_split(data, seed):
        dataset = load_dataset(data, seed)
        return dataclasses.replace(dataset, x_test=dataset.x_test[:0], y_test=dataset.y_test[:0])

    monkeypatch.setattr(cli_module, "_load_dataset", without_test_split)
    code, stdout, stderr = run_cli(
        "explain", "--model", files["model"], "--data", files["data"], "--method", "saliency", "--index", "29",
        "--out", out,
    )  # fmt: skip
    assert code == 0, stderr
    assert "no test split" in stderr and "1 train example(s)" in stdout
    record = _strict_json(out / "explain.json")
    assert record["split"] == "train" and record["examples"][0]["index"] == 29
    assert record["examples"][0]["completeness_error"] is None and "-" in stdout.splitlines()[2].split()


def test_explain_unknown_method_is_one_line(files, tmp_path):
    line = assert_one_line_error(
        run_cli("explain", "--model", files["model"], "--data", files["data"], "--method", "magic", "--out", tmp_path),
        "unknown method 'magic'",
    )
    assert "integrated_gradients" in line and "ig=integrated_gradients" in line


@pytest.mark.parametrize(
    ("index", "fragment"),
    [
        ("5..2", "A <= B"),
        ("a", "not an index"),
        ("-1", "must be >= 0"),
        ("1,,2", "not an index"),
        ("0,99", "out of range"),
    ],
)
def test_explain_bad_index_is_one_line(files, tmp_path, index, fragment):
    out = tmp_path / "explain"
    line = assert_one_line_error(
        run_cli("explain", "--model", files["model"], "--data", files["data"], "--index", index, "--out", out), fragment
    )
    if fragment == "out of range":
        assert "test split" in line and "0..9" in line  # 40 rows, 25% held out
    assert not out.exists()  # nothing written on a mistake


def test_explain_never_overwrites_user_files(files, tmp_path):
    out = tmp_path / "explain"
    out.mkdir()
    (out / "example-0.svg").write_text("<svg>my drawing</svg>")
    args = ("explain", "--model", files["model"], "--data", files["data"], "--index", "0", "--out", out)
    assert_one_line_error(run_cli(*args), "--overwrite")
    assert (out / "example-0.svg").read_text() == "<svg>my drawing</svg>"
    assert run_cli(*args, "--overwrite")[0] == 0
    assert (out / "example-0.svg").read_text().startswith("<!-- generator: deepscope -->")
