"""A sweep killed with SIGKILL at any moment loses no finished trial, leaves no half-written row and
duplicates nothing; rerunning it gives exactly the results of an uninterrupted run.

The kills are real (a `deepscope sweep run` subprocess receives SIGKILL) and deterministic: either
at a named point inside the store's write (DEEPSCOPE_TEST_CRASH, see deepscope/sweep/store.py) or
once the store shows a given number of finished trials (polled, so no test depends on timing).
"""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

import deepscope.sweep as sweep
from deepscope.sweep import SweepStore
from tests.sweep.conftest import tiny_spec


def spec_file(tmp_path):
    spec = tiny_spec(**{"search.grid": {"model.width": [4, 8, 12]}, "seeds": [0, 1]})  # 6 trials
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    return spec, path


def cli(spec_path, store, env=None):
    code = (
        "import json, sys; from deepscope.sweep import run; "
        f"run(json.load(open({str(spec_path)!r})), {str(store)!r}, progress=False)"
    )
    return subprocess.Popen([sys.executable, "-c", code], env={**os.environ, **(env or {})}, stderr=subprocess.PIPE)


def snapshot(store):
    with SweepStore(store, create=False) as opened:
        trials = opened.trials()
        results = opened.results()
    with sqlite3.connect(store) as db:
        rows = db.execute("SELECT COUNT(*), COUNT(DISTINCT trial_key || '/' || metric) FROM results").fetchone()
    return trials, results, rows


def reference(tmp_path, spec):
    store = tmp_path / "reference.db"
    sweep.run(spec, store, progress=False)
    return snapshot(store)[1]


def check_consistent(store):
    trials, results, (rows, distinct) = snapshot(store)
    assert rows == distinct  # no duplicated row
    done = {t["key"] for t in trials if t["status"] == "done"}
    assert set(results) <= done  # no results without a finished trial (no half-written trial)
    for key in done:
        assert (store.with_name(store.name + ".artifacts") / f"{key}.safetensors").is_file()
    return done


@pytest.mark.parametrize(
    "point",
    [
        "transaction:3",
        pytest.param("weights:1", marks=pytest.mark.slow),
        pytest.param("transaction:1", marks=pytest.mark.slow),
        pytest.param("weights:5", marks=pytest.mark.slow),
    ],
)
def test_sigkill_inside_the_write_then_rerun_matches_an_uninterrupted_run(tmp_path, point):
    spec, path = spec_file(tmp_path)
    store = tmp_path / "s.db"
    process = cli(path, store, {"DEEPSCOPE_TEST_CRASH": point})
    process.wait(timeout=300)
    assert process.returncode == -signal.SIGKILL
    done = check_consistent(store)
    finished_before = int(point.split(":")[1]) - 1
    assert len(done) == finished_before  # exactly the trials committed before the kill
    assert sweep.status(store).interrupted == 6 - finished_before  # the dead run's trials, shown as such
    rerun = cli(path, store)
    assert rerun.wait(timeout=300) == 0, rerun.stderr.read().decode()
    check_consistent(store)
    trials, results, _ = snapshot(store)
    assert all(t["status"] == "done" for t in trials)
    assert results == reference(tmp_path, spec)
    # finished trials were not redone; the interrupted ones were (once)
    assert sorted(t["attempts"] for t in trials) == [1] * finished_before + [2] * (6 - finished_before)


def test_sigkill_after_some_trials_finished(tmp_path):
    spec, path = spec_file(tmp_path)
    store = tmp_path / "s.db"
    process = cli(path, store)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if store.exists():
            try:
                with sqlite3.connect(store, timeout=1) as db:
                    done = db.execute("SELECT COUNT(*) FROM trials WHERE status='done'").fetchone()[0]
            except sqlite3.OperationalError:
                done = 0
            if done >= 2:
                break
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    kept = check_consistent(store)
    assert len(kept) >= 2 or process.returncode == 0
    rerun = cli(path, store)
    assert rerun.wait(timeout=300) == 0
    assert snapshot(store)[1] == reference(tmp_path, spec)
