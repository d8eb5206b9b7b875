"""``deepscope experiment``: every mistake is one line with status 2, and nothing runs."""

from __future__ import annotations

import pytest

from deepscope.cli import main


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["experiment", "grokking", "--out", "g"], "one of double_descent"),
        (["experiment", "random_labels", "--out", "g", "--budget", "huge"], "'huge' is not one of"),
        (["experiment", "random_labels", "--out", "g", "--set", "seeds"], "PATH=VALUE"),
        (["experiment", "random_labels", "--out", "g", "--set", "seeds=[0]"], "seeds"),
        (["experiment", "all", "--out", "g", "--set", "seeds=[0,1]"], "one experiment"),
        (["experiment", "random_labels", "--out", "g", "--workers", "64"], "workers"),
    ],
)
def test_cli_errors_are_one_line_and_run_nothing(tmp_path, monkeypatch, capsys, args, words):
    monkeypatch.chdir(tmp_path)
    status = main(args)
    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1 and words in err, err
    assert not (tmp_path / "g").exists() or not any((tmp_path / "g").glob("*.db"))
