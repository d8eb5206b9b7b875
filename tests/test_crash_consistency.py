"""Outputs are all or nothing: report.html + results.json (and train's, explain's files) are one unit.

Real subprocesses are killed with SIGKILL at named steps of the writer (the test hook
``DEEPSCOPE_TEST_KILL_AT``, read only by deepscope.report._write), so nothing depends on timing;
then the output directory must hold the previous complete unit or the new complete unit, and the
next run must leave no stray temporaries. The tests with several subprocesses are marked slow
(CI runs them in its own step); one SIGKILL test stays in the fast suite. A full disk and a read-only directory are simulated by
making the writes raise the matching OSError.
"""

import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from deepscope import DeepscopeError, Problem
from deepscope.report import SECTIONS, AuditContext, Section, Text, _write, register_section
from deepscope.report.html import write_report

_REPORT_SCRIPT = """
import sys, torch
from deepscope import Problem
from deepscope.report import AuditContext, Section, Text, register_section
from deepscope.report import html
from deepscope.report.html import write_report
html.import_all_modules = lambda: []  # only the test's section is needed: skip importing every family
label = sys.argv[2]
register_section("zz_crash", title="Crash", order=1)(lambda context: Section(summary=label, blocks=[Text(label)]))
problem = Problem(torch.nn.Linear(3, 2), (torch.randn(8, 3), torch.randint(0, 2, (8,))))
write_report(AuditContext(problem), sys.argv[1], sections=["zz_crash"])
"""


def _run_report(out: Path, label: str, kill_at: str | None = None) -> int:
    env = {k: v for k, v in os.environ.items() if k != "DEEPSCOPE_TEST_KILL_AT"}
    if kill_at:
        env["DEEPSCOPE_TEST_KILL_AT"] = kill_at
    # the timeout only turns a hang into a failure; no duration is asserted
    result = subprocess.run(
        [sys.executable, "-c", _REPORT_SCRIPT, str(out), label], env=env, capture_output=True, timeout=600, check=False
    )
    return result.returncode


def _visible_label(out: Path) -> str | None:
    """The run whose pair is visible; fails the test on a mix or on half a pair."""
    html, data = out / "report.html", out / "results.json"
    assert html.exists() == data.exists(), f"half a pair: {sorted(os.listdir(out))}"
    if not html.exists():
        return None
    label = json.loads(data.read_text())["sections"]["zz_crash"]["summary"]
    assert f"<p>{label}</p>" in html.read_text(), "report.html and results.json come from different runs"
    return label


def _assert_clean(out: Path, unit: str = "report") -> None:
    state = sorted(os.listdir(out / ".deepscope" / unit))
    assert len(state) == 3 and state[0] == "current" and state[1].startswith("gen-") and state[2] == "lock", state
    assert all(not name.startswith(".") or name == ".deepscope" for name in os.listdir(out))


@pytest.mark.slow  # several real subprocesses (seconds each); CI runs them in its slow step
def test_sigkill_at_every_step_leaves_one_complete_pair(tmp_path):
    out = tmp_path / "out"
    assert _run_report(out, "first") == 0
    assert _visible_label(out) == "first"
    for step in ("prepared", "staging", "staged", "linked"):  # before the switch: the previous pair stays
        assert _run_report(out, f"killed-{step}", kill_at=step) == -signal.SIGKILL
        assert _visible_label(out) == "first", step
    assert _run_report(out, "switched", kill_at="swapped") == -signal.SIGKILL  # after the switch: the new pair
    assert _visible_label(out) == "switched"
    assert _run_report(out, "last") == 0
    assert _visible_label(out) == "last"
    _assert_clean(out)  # the stale generations of the killed runs were removed


def test_sigkill_on_the_first_run_leaves_nothing_half_written(tmp_path):
    out = tmp_path / "fresh"
    assert _run_report(out, "new", kill_at="linked") == -signal.SIGKILL
    assert _visible_label(out) is None  # the links dangle until the switch: no file is visible


@pytest.mark.slow  # several real subprocesses (seconds each); CI runs them in its slow step
def test_pair_from_an_older_deepscope_is_migrated_without_a_mix(tmp_path):
    out = tmp_path / "legacy"
    assert _run_report(out, "old") == 0
    for name in ("report.html", "results.json"):  # the layout of older versions: two regular files
        text = (out / name).read_text()
        (out / name).unlink()
        (out / name).write_text(text)
    assert _run_report(out, "new", kill_at="migrated") == -signal.SIGKILL  # one file is a link, one is not
    assert _visible_label(out) == "old"
    assert _run_report(out, "new") == 0
    assert _visible_label(out) == "new" and (out / "report.html").is_symlink()
    _assert_clean(out)


@pytest.mark.slow  # several real subprocesses (seconds each); CI runs them in its slow step
def test_sigkill_during_train_keeps_the_previous_model_history_pair(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    data = tmp_path / "data.npz"
    np.savez(data, x=rng.normal(size=(40, 4)).astype(np.float32), y=np.arange(40) % 2)
    out = tmp_path / "run"

    def train(epochs: int, kill_at: str | None = None) -> int:
        env = {k: v for k, v in os.environ.items() if k != "DEEPSCOPE_TEST_KILL_AT"}
        if kill_at:
            env["DEEPSCOPE_TEST_KILL_AT"] = kill_at
        command = [sys.executable, "-m", "deepscope", "train", "--data", str(data), "--arch", "mlp",
                   "--epochs", str(epochs), "--out", str(out)]  # fmt: skip
        return subprocess.run(command, env=env, capture_output=True, timeout=600, check=False).returncode

    assert train(1) == 0
    files = ["model.safetensors", "model.json", "init.safetensors", "init.json", "history.json"]
    first = {name: (out / name).read_bytes() for name in files}
    assert train(2, kill_at="linked") == -signal.SIGKILL
    assert {name: (out / name).read_bytes() for name in files} == first  # all five from the first run
    assert train(2) == 0
    assert json.loads((out / "history.json").read_text())["epochs"] == 2
    assert len({os.path.dirname(os.path.realpath(out / name)) for name in files}) == 1
    _assert_clean(out, "train")


# ----------------------------------------------------------------------------------- in-process failures
def _label_section(label):
    return lambda context: Section(summary=label, blocks=[Text(label)])


@pytest.fixture
def context():
    problem = Problem(torch.nn.Linear(3, 2), (torch.randn(8, 3), torch.randint(0, 2, (8,))))
    yield AuditContext(problem)
    SECTIONS.pop("zz_crash", None)


def _failing_writes(code: int, real=_write._write_file):
    def write(path, content):
        if not Path(path).name.startswith("probe-"):  # the writability probe passes, the real write fails
            raise OSError(code, os.strerror(code), str(path))
        real(path, content)

    return write


def test_full_disk_keeps_the_previous_pair_and_leaves_no_temporaries(context, tmp_path, monkeypatch):
    register_section("zz_crash", title="Crash", order=1)(_label_section("first"))
    write_report(context, tmp_path, sections=["zz_crash"])
    SECTIONS.pop("zz_crash")
    register_section("zz_crash", title="Crash", order=1)(_label_section("second"))
    monkeypatch.setattr(_write, "_write_file", _failing_writes(errno.ENOSPC))
    with pytest.raises(DeepscopeError, match="the disk is full.*the previous files were kept"):
        write_report(context, tmp_path, sections=["zz_crash"])
    assert _visible_label(tmp_path) == "first"
    _assert_clean(tmp_path)


def test_read_only_directory_is_refused_before_the_work(context, tmp_path, monkeypatch):
    calls = []
    register_section("zz_crash", title="Crash", order=1)(lambda c: calls.append(1) or Section(summary="x", blocks=[]))

    def read_only(path, content):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    monkeypatch.setattr(_write, "_write_file", read_only)
    with pytest.raises(DeepscopeError, match="the file system is read-only.*nothing was computed"):
        write_report(context, tmp_path / "out", sections=["zz_crash"])
    assert calls == []  # no section ran


def test_cli_full_disk_is_one_line_with_exit_2(tmp_path, monkeypatch, capsys):
    import numpy as np

    from deepscope.cli import main
    from deepscope.io import save_model
    from deepscope.models import build

    model = save_model(build("mlp", (4,), 2), tmp_path / "model")
    data = tmp_path / "data.npz"
    np.savez(data, x=np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32), y=np.arange(40) % 2)
    out = tmp_path / "report"
    args = ["audit", "--model", str(model), "--data", str(data), "--out", str(out), "--sections", "model_card"]
    assert main(args) == 0
    before = {name: (out / name).read_bytes() for name in ("report.html", "results.json")}
    capsys.readouterr()
    monkeypatch.setattr(_write, "_write_file", _failing_writes(errno.ENOSPC))
    assert main(args) == 2
    stderr = capsys.readouterr().err
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]  # (the rest is the progress bar)
    assert len(lines) == 1 and lines[0].startswith("error: Cannot write the report into") and "disk is full" in lines[0]
    assert "Traceback" not in stderr
    assert {name: (out / name).read_bytes() for name in before} == before


def test_two_writers_of_one_unit_are_refused(tmp_path):
    with _write.OutputUnit(tmp_path, "report"):
        with pytest.raises(DeepscopeError, match="Another deepscope run is writing"):
            _write.OutputUnit(tmp_path, "report").prepare()
    _write.OutputUnit(tmp_path, "report").prepare()  # released once the first is done


def test_explain_unit_drops_the_previous_runs_extra_figures(tmp_path):
    unit = _write.OutputUnit(tmp_path, "explain")
    unit.commit({"explain.json": "{}", "example-0.svg": "<svg/>", "example-1.svg": "<svg/>"})
    unit.commit({"explain.json": "{}", "example-5.svg": "<svg/>"})
    unit.close()
    assert sorted(os.listdir(tmp_path)) == [".deepscope", "example-5.svg", "explain.json"]


@pytest.mark.slow  # several real subprocesses (seconds each); CI runs them in its slow step
def test_sigkill_during_explain_keeps_the_previous_files_together(tmp_path):
    import numpy as np

    from deepscope.io import save_model
    from deepscope.models import build

    model = save_model(build("mlp", (4,), 2), tmp_path / "model")
    data = tmp_path / "data.npz"
    np.savez(data, x=np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32), y=np.arange(40) % 2)
    out = tmp_path / "explain"

    def explain(index: str, kill_at: str | None = None) -> int:
        env = {k: v for k, v in os.environ.items() if k != "DEEPSCOPE_TEST_KILL_AT"}
        if kill_at:
            env["DEEPSCOPE_TEST_KILL_AT"] = kill_at
        command = [sys.executable, "-m", "deepscope", "explain", "--model", str(model), "--data", str(data),
                   "--method", "saliency", "--index", index, "--out", str(out)]  # fmt: skip
        return subprocess.run(command, env=env, capture_output=True, timeout=600, check=False).returncode

    def visible() -> dict[str, bytes]:
        return {name: (out / name).read_bytes() for name in os.listdir(out) if (out / name).is_file()}

    assert explain("0..1") == 0
    first = visible()
    assert sorted(first) == ["example-0.svg", "example-1.svg", "explain.html", "explain.json"]
    assert explain("3", kill_at="linked") == -signal.SIGKILL
    assert visible() == first  # the new example-3.svg link dangles: invisible until the switch
    assert explain("3") == 0
    assert sorted(visible()) == ["example-3.svg", "explain.html", "explain.json"]
    _assert_clean(out, "explain")


def test_cli_train_into_a_read_only_directory_fails_before_training(tmp_path, monkeypatch, capsys):
    import deepscope.models
    from deepscope.cli import main

    trained = []
    monkeypatch.setattr(deepscope.models, "train", lambda *args, **kwargs: trained.append(1))

    def read_only(path, content):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    monkeypatch.setattr(_write, "_write_file", read_only)
    assert main(["train", "--data", "digits", "--out", str(tmp_path / "run")]) == 2
    stderr = capsys.readouterr().err
    assert stderr.count("error:") == 1 and "read-only" in stderr and "nothing was computed" in stderr
    assert trained == []


def test_temporaries_of_older_versions_are_removed_by_the_next_run(context, tmp_path):
    stale = [".report.html.ab12cd34.tmp", ".results.json.x_y_z_12.tmp", "model.safetensorsq1w2e3r4.tmp"]
    for name in stale:
        (tmp_path / name).write_text("half")
    (tmp_path / "notes.tmp").write_text("mine")  # not deepscope's: kept
    register_section("zz_crash", title="Crash", order=1)(_label_section("now"))
    write_report(context, tmp_path, sections=["zz_crash"])
    assert sorted(os.listdir(tmp_path)) == [".deepscope", "notes.tmp", "report.html", "results.json"]
