"""The sweep store on its own: schema checks, idempotent spec versions, the trial life cycle, the lock."""

from __future__ import annotations

import sqlite3

import pytest

from deepscope.sweep._expand import trial_key
from deepscope.sweep.store import SCHEMA_VERSION, StoreError, SweepStore
from deepscope.sweep.trial import TrialOutput

CONFIGS = [{"model": {"width": w}, "seed": 0} for w in (4, 8, 16)]


def _output(key, error=None):
    history = {"stopped_by": "max_epochs", "epochs_run": 3}
    metrics = {} if error else {"gap": (0.1, None), "spectral.norm": (2.5, 0.2)}
    return TrialOutput(key, metrics, None if error else b"weights", history, 1.0, 0.5, error, "host")


def test_a_spec_adds_only_new_trials_in_order(tmp_path):
    with SweepStore(tmp_path / "s.db") as store:
        assert store.spec() is None and store.add_spec({"v": 1}, CONFIGS[:2]) == 2
        assert store.add_spec({"v": 2}, CONFIGS) == 1  # extending keeps the first two
        assert store.spec() == {"v": 2} and store.keys() == [trial_key(c) for c in CONFIGS]
        assert store.counts() == {"pending": 3, "running": 0, "done": 0, "failed": 0}


def test_the_life_of_a_trial(tmp_path):
    with SweepStore(tmp_path / "s.db") as store:
        store.add_spec({}, CONFIGS)
        first, second, third = store.keys()
        store.mark_running(first)
        store.mark_running(second)
        store.finish(_output(first))
        store.finish(_output(second, error="ValueError: boom"))
        assert store.counts() == {"pending": 1, "running": 0, "done": 1, "failed": 1}
        assert store.results() == {first: {"gap": (0.1, None), "spectral.norm": (2.5, 0.2)}}
        assert store.history(first) == {"stopped_by": "max_epochs", "epochs_run": 3} and store.history(third) is None
        assert (store.artifacts / f"{first}.safetensors").read_bytes() == b"weights"
        rows = {row["key"]: row for row in store.trials()}
        assert rows[first]["attempts"] == 1 and rows[first]["stopped_by"] == "max_epochs"
        assert rows[second]["error"] == "ValueError: boom" and rows[second]["status"] == "failed"
        assert [key for key, _ in store.todo(retry_failed=False)] == [third]
        assert [key for key, _ in store.todo(retry_failed=True)] == [second, third]
        store.mark_running(third)
    with SweepStore(tmp_path / "s.db") as store:  # a run died with the third trial running
        assert store.reset_interrupted() == 1 and store.counts()["pending"] == 1


def test_the_lock_is_exclusive_and_released_on_close(tmp_path):
    path = tmp_path / "s.db"
    with SweepStore(path) as holder:
        holder.lock()
        with SweepStore(path) as other:
            assert other.is_locked()
            with pytest.raises(StoreError, match="in use by another `deepscope sweep run` \\(pid "):
                other.lock()
    with SweepStore(path) as store:
        assert not store.is_locked()


def test_what_is_not_a_store_is_refused(tmp_path):
    with pytest.raises(StoreError, match="No sweep store at"):
        SweepStore(tmp_path / "missing.db", create=False)
    with pytest.raises(StoreError, match="folder of the store .* does not exist"):
        SweepStore(tmp_path / "no" / "s.db")
    with pytest.raises(StoreError, match="not a regular file"):
        SweepStore(tmp_path)
    (tmp_path / "text.db").write_text("hello, not a database, " * 100)
    with pytest.raises(StoreError, match="is not a deepscope sweep store"):
        SweepStore(tmp_path / "text.db")
    other = sqlite3.connect(tmp_path / "other.db")
    other.execute("CREATE TABLE t (x)")
    other.close()
    with pytest.raises(StoreError, match="a SQLite database but not a deepscope sweep store"):
        SweepStore(tmp_path / "other.db")
    with SweepStore(tmp_path / "new.db") as store:
        store.db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 1),))
    with pytest.raises(StoreError, match="written by a newer deepscope"):
        SweepStore(tmp_path / "new.db")
