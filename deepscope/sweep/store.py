"""The sweep store: one SQLite database per sweep (stdlib ``sqlite3``, WAL mode), written by the driver only.

Tables:

* ``meta`` — ``schema_version``, the deepscope version that created the store;
* ``specs`` — every accepted version of the sweep spec (the last row is the current one; a new
  row appears only when a sweep is extended);
* ``trials`` — one row per trial: key, position, config JSON, status (``pending``, ``running``,
  ``done``, ``failed``), attempts, timings, error text, host, deepscope and torch versions, the
  stop rule that ended training;
* ``results`` — one row per (trial, metric): value and standard error (NULL where there is none);
* ``histories`` — each finished trial's learning curves (JSON).

A finished trial is committed in ONE transaction (its results, history and status together), so a
crash at any moment leaves the trial either done with all its rows or not done with none; its
weights are written before that transaction to ``<store>.artifacts/<key>.safetensors`` through a
temporary file and ``os.replace`` (atomic), so a done trial always has its weights.

Exclusive use: :meth:`SweepStore.lock` takes an ``flock`` on ``<store>.lock`` for the whole run. A
second ``sweep run`` on the same store is refused with a clear message (the lock is released by the
kernel when its process dies, even by SIGKILL, so a crash never leaves a stale lock). Trials left
``running`` by a killed run are set back to ``pending`` by the next run.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from deepscope.errors import DeepscopeError
from deepscope.sweep.spec import canonical_json, trial_key
from deepscope.sweep.trial import TrialOutput

__all__ = ["SweepStore", "SCHEMA_VERSION", "StoreError"]

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS specs (id INTEGER PRIMARY KEY AUTOINCREMENT, spec_json TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
    key TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    config_json TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'done', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    started REAL, finished REAL, train_seconds REAL, analysis_seconds REAL,
    error TEXT, host TEXT, deepscope_version TEXT, torch_version TEXT,
    stopped_by TEXT, epochs_run INTEGER
);
CREATE TABLE IF NOT EXISTS results (
    trial_key TEXT NOT NULL REFERENCES trials(key), metric TEXT NOT NULL, value REAL, stderr REAL,
    PRIMARY KEY (trial_key, metric)
);
CREATE TABLE IF NOT EXISTS histories (trial_key TEXT PRIMARY KEY REFERENCES trials(key), history_json TEXT NOT NULL);
"""


class StoreError(DeepscopeError):
    """The store cannot be used: locked by another run, newer schema, not a sweep store, spec changed."""


class SweepStore:
    """A sweep's SQLite database and its artifacts folder. Use as a context manager."""

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        self.path = Path(path)
        if self.path.exists() and not self.path.is_file():
            raise StoreError(f"The store {str(self.path)!r} is not a regular file (expected a SQLite database path).")
        if not self.path.exists() and not create:
            raise StoreError(
                f"No sweep store at {str(self.path)!r} (run `deepscope sweep run SPEC --store {self.path}` first)."
            )
        if not self.path.parent.exists():
            raise StoreError(f"The folder of the store {str(self.path)!r} does not exist.")
        self.artifacts = self.path.with_name(self.path.name + ".artifacts")
        self._lock_file: Any = None
        try:
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self._check_or_create_schema(create)
        except sqlite3.DatabaseError as error:
            raise StoreError(f"{str(self.path)!r} is not a deepscope sweep store: {error}.") from error

    def __enter__(self) -> SweepStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self.db.close()
        if self._lock_file is not None:
            self._lock_file.close()  # closing the descriptor releases the flock
            self._lock_file = None

    # ------------------------------------------------------------------------ schema and lock
    def _check_or_create_schema(self, create: bool) -> None:
        tables = {row[0] for row in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "meta" in tables:
            row = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"The store {self.path.name} was written by a newer deepscope (schema {version}; this one reads "
                    f"up to {SCHEMA_VERSION}). Upgrade deepscope to use it."
                )
            return
        if tables:
            raise StoreError(f"{str(self.path)!r} is a SQLite database but not a deepscope sweep store.")
        if not create:
            raise StoreError(f"{str(self.path)!r} is an empty database, not a sweep store.")
        import deepscope

        with self.transaction():
            for statement in _SCHEMA.strip().split(";"):
                if statement.strip():
                    self.db.execute(statement)
            self.db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            self.db.execute("INSERT INTO meta VALUES ('created_by', ?)", (f"deepscope {deepscope.__version__}",))

    def lock(self) -> None:
        """Take the store for this process, or raise StoreError if another run holds it."""
        import fcntl

        handle = open(self.path.with_name(self.path.name + ".lock"), "a+")  # noqa: SIM115 (held until close)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise StoreError(
                f"The store {self.path.name} is in use by another `deepscope sweep run` ({holder}). "
                "Wait for it to finish, or use a different --store."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}")
        handle.flush()
        self._lock_file = handle

    def is_locked(self) -> bool:
        """Whether some run holds the store now (without taking it)."""
        import fcntl

        path = self.path.with_name(self.path.name + ".lock")
        if self._lock_file is not None:
            return True
        if not path.exists():
            return False
        with open(path) as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
        return False

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # ------------------------------------------------------------------------ spec and trials
    def spec(self) -> dict[str, Any] | None:
        row = self.db.execute("SELECT spec_json FROM specs ORDER BY id DESC LIMIT 1").fetchone()
        return json.loads(row[0]) if row else None

    def add_spec(self, spec: Mapping[str, Any], configs: Sequence[Mapping[str, Any]]) -> int:
        """Record a spec version and insert its trials that are not in the store yet; returns how many."""
        added = 0
        with self.transaction():
            self.db.execute("INSERT INTO specs (spec_json, created) VALUES (?, ?)", (canonical_json(spec), time.time()))
            start = self.db.execute("SELECT COALESCE(MAX(position), -1) + 1 FROM trials").fetchone()[0]
            for config in configs:
                cursor = self.db.execute(
                    "INSERT OR IGNORE INTO trials (key, position, config_json, status) VALUES (?, ?, ?, 'pending')",
                    (trial_key(config), start + added, canonical_json(config)),
                )
                added += cursor.rowcount
        return added

    def keys(self) -> list[str]:
        return [row[0] for row in self.db.execute("SELECT key FROM trials ORDER BY position")]

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(("pending", "running", "done", "failed"), 0)
        for status, number in self.db.execute("SELECT status, COUNT(*) FROM trials GROUP BY status"):
            counts[status] = number
        return counts

    def reset_interrupted(self) -> int:
        """Trials left 'running' by a run that died go back to 'pending' (call while holding the lock)."""
        with self.transaction():
            return self.db.execute("UPDATE trials SET status='pending' WHERE status='running'").rowcount

    def todo(self, retry_failed: bool) -> list[tuple[str, dict[str, Any]]]:
        statuses = ("pending", "failed") if retry_failed else ("pending",)
        marks = ",".join("?" * len(statuses))
        rows = self.db.execute(
            f"SELECT key, config_json FROM trials WHERE status IN ({marks}) ORDER BY position", statuses
        ).fetchall()
        return [(key, json.loads(config)) for key, config in rows]

    def mark_running(self, key: str) -> None:
        with self.transaction():
            self.db.execute(
                "UPDATE trials SET status='running', attempts=attempts+1, started=? WHERE key=?", (time.time(), key)
            )

    def finish(self, output: TrialOutput) -> None:
        """Write a trial's outcome: weights first (atomic file), then one transaction for its rows."""
        import torch

        import deepscope

        if output.weights is not None:
            self.artifacts.mkdir(exist_ok=True)
            _atomic_write_bytes(self.artifacts / f"{output.key}.safetensors", output.weights)
        _crash_point("weights")
        status = "failed" if output.error else "done"
        history = output.history or {}
        with self.transaction():
            self.db.execute("DELETE FROM results WHERE trial_key=?", (output.key,))
            self.db.execute("DELETE FROM histories WHERE trial_key=?", (output.key,))
            self.db.executemany(
                "INSERT INTO results VALUES (?, ?, ?, ?)",
                [(output.key, name, value, error) for name, (value, error) in sorted(output.metrics.items())],
            )
            if output.history is not None:
                self.db.execute("INSERT INTO histories VALUES (?, ?)", (output.key, json.dumps(output.history)))
            self.db.execute(
                "UPDATE trials SET status=?, finished=?, train_seconds=?, analysis_seconds=?, error=?, host=?, "
                "deepscope_version=?, torch_version=?, stopped_by=?, epochs_run=? WHERE key=?",
                (
                    status,
                    time.time(),
                    output.train_seconds,
                    output.analysis_seconds,
                    output.error,
                    output.host,
                    deepscope.__version__,
                    torch.__version__,
                    history.get("stopped_by"),
                    history.get("epochs_run"),
                    output.key,
                ),
            )
            _crash_point("transaction")

    # ------------------------------------------------------------------------ reading
    def trials(self) -> list[dict[str, Any]]:
        columns = [
            "key", "position", "config_json", "status", "attempts", "started", "finished", "train_seconds",
            "analysis_seconds", "error", "host", "deepscope_version", "torch_version", "stopped_by", "epochs_run",
        ]  # fmt: skip
        rows = self.db.execute(f"SELECT {', '.join(columns)} FROM trials ORDER BY position").fetchall()
        return [dict(zip(columns, row)) for row in rows]

    def results(self) -> dict[str, dict[str, tuple[float | None, float | None]]]:
        out: dict[str, dict[str, tuple[float | None, float | None]]] = {}
        for key, metric, value, error in self.db.execute("SELECT trial_key, metric, value, stderr FROM results"):
            out.setdefault(key, {})[metric] = (value, error)
        return out

    def history(self, key: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT history_json FROM histories WHERE trial_key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else None


_CRASH_COUNTS: dict[str, int] = {}


def _crash_point(name: str) -> None:
    """Crash-consistency tests only: ``DEEPSCOPE_TEST_CRASH=<point>:<n>`` SIGKILLs this process the n-th
    time it reaches ``point`` ("weights": weights written, rows not; "transaction": rows written, not committed)."""
    wanted = os.environ.get("DEEPSCOPE_TEST_CRASH")
    if not wanted:
        return
    _CRASH_COUNTS[name] = _CRASH_COUNTS.get(name, 0) + 1
    if wanted == f"{name}:{_CRASH_COUNTS[name]}":
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.deepscope-tmp-{os.getpid()}")
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
