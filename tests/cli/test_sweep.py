import json

import pytest

from deepscope.cli import main
from tests.sweep.conftest import tiny_spec


def write_toml(path, body):
    path.write_text(body)
    return path


TOML = """
name = "cli"
seeds = [0]
[dataset]
name = "digits"
[data]
train_size = 100
[model]
width = 4
depth = 1
[train]
max_epochs = 2
[search.grid]
"model.width" = [4, 6]
"""


def run_cli(capsys, *args):
    status = main(list(args))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_run_status_and_rerun(tmp_path, capsys):
    spec = write_toml(tmp_path / "s.toml", TOML)
    store = tmp_path / "s.db"
    status, out, _ = run_cli(capsys, "sweep", "run", str(spec), "--store", str(store))
    assert status == 0 and "2 done" in out and "0 failed" in out
    status, out, _ = run_cli(capsys, "sweep", "status", str(store))
    assert status == 0 and "'cli': 2 trials: 2 done" in out
    status, out, _ = run_cli(capsys, "sweep", "run", str(spec), "--store", str(store))
    assert status == 0 and "2 done" in out
    status, out, _ = run_cli(capsys, "sweep", "report", str(store), "--out", str(tmp_path / "r"), "--bootstrap", "0")
    assert status == 0 and "sweep.html" in out and (tmp_path / "r" / "sweep.html").is_file()


def test_list_names_the_builtin_studies(capsys):
    status, out, _ = run_cli(capsys, "sweep", "list")
    assert status == 0 and "builtin:generalization-small" in out and "builtin:generalization-full" in out


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (TOML.replace("max_epochs = 2", "max_epochs = -2"), "train.max_epochs: expected an int >= 1"),
        (TOML + "\n[[analyses]]\nname = 'nope'\n", "analyses[0].name: unknown analysis 'nope'"),
        (TOML.replace('"model.width" = [4, 6]', '"model.width" = []'), "search.grid.model.width"),
        (TOML.replace("[data]", "colour = 1\n[data]"), "dataset.colour: unknown key"),
        ("name = [", "not valid TOML"),
    ],
)
def test_bad_specs_give_one_error_line_and_status_2(tmp_path, capsys, body, words):
    spec = write_toml(tmp_path / "s.toml", body)
    status, _, err = run_cli(capsys, "sweep", "run", str(spec), "--store", str(tmp_path / "s.db"))
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], err
    assert not (tmp_path / "s.db").exists()  # nothing was run or created


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["sweep", "run", "builtin:nope"], "one of 'generalization-full', 'generalization-small'"),
        (["sweep", "run", "missing.toml"], "No sweep spec"),
        (["sweep", "status", "missing.db"], "No sweep store"),
        (["sweep", "run", "builtin:generalization-small", "--workers", "64"], "workers"),
        (["sweep", "run", "builtin:generalization-small", "--address", "auto"], "--executor ray only"),
        (["sweep", "run", "builtin:generalization-small", "--executor", "dask"], "'dask' is not one of"),
    ],
)
def test_bad_invocations(tmp_path, monkeypatch, capsys, args, words):
    monkeypatch.chdir(tmp_path)
    status, _, err = run_cli(capsys, *args)
    assert status == 2 and len(err.strip().splitlines()) == 1 and words in err, err
    assert not list(tmp_path.iterdir())  # no store was created


def test_a_different_spec_on_the_same_store_is_refused(tmp_path, capsys):
    spec = write_toml(tmp_path / "s.toml", TOML)
    store = tmp_path / "s.db"
    assert run_cli(capsys, "sweep", "run", str(spec), "--store", str(store))[0] == 0
    changed = write_toml(tmp_path / "t.toml", TOML.replace("max_epochs = 2", "max_epochs = 3"))
    status, _, err = run_cli(capsys, "sweep", "run", str(changed), "--store", str(store))
    assert status == 2 and "different spec" in err


def test_a_dict_spec_round_trips_through_json(tmp_path):
    # the spec stored in the database is the normalised one; it parses back to itself
    from deepscope.sweep import SweepStore, parse_spec, run

    run(tiny_spec(**{"seeds": [0], "search.grid": {"model.width": [4]}}), tmp_path / "s.db", progress=False)
    with SweepStore(tmp_path / "s.db", create=False) as store:
        stored = store.spec()
    assert parse_spec(json.loads(json.dumps(stored))) == stored
