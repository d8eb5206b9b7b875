"""Running a sweep into its store, resuming it, and reading it back.

``run(spec, store)`` validates the spec, checks the data once, opens (or creates) the store, takes
its lock, and runs every trial that is not done yet: a rerun of the same spec skips finished
trials and reruns pending ones (and failed ones with ``retry_failed=True``). A trial that raises is
recorded as failed with its error and the sweep goes on. A different spec on an existing store is
refused, unless ``extend=True`` and every trial of the stored spec is still in the new one (added
grid values, seeds or random draws: the new points run, the old ones are kept).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deepscope.errors import DeepscopeError
from deepscope.results import Result
from deepscope.sweep.executors import check_executor, make_executor
from deepscope.sweep.spec import canonical_json, expand, parse_spec, read_spec, trial_key
from deepscope.sweep.store import StoreError, SweepStore

__all__ = ["run", "status", "load", "SweepStatus", "resolve_spec"]


@dataclasses.dataclass(frozen=True)
class SweepStatus(Result):
    """Where a sweep stands: trial counts by status, timings, and an ETA for the rest.

    Attributes:
        name: the spec's name. total, done, failed, pending, running: trial counts (``running``
            counts trials of a run in progress; those of a run that died count as ``interrupted``).
        interrupted: trials marked running by a run that is no longer alive (rerun to redo them).
        mean_trial_seconds: mean wall time of a finished trial (NaN before the first).
        eta_seconds: remaining trials x mean trial time / workers of the last run (NaN if unknown).
        failures: ``(key, first line of the error)`` of each failed trial.
    """

    name: str
    total: int
    done: int
    failed: int
    pending: int
    running: int
    interrupted: int
    mean_trial_seconds: float
    eta_seconds: float
    failures: list[tuple[str, str]]

    def summary(self) -> str:
        remaining = self.pending + self.running + self.interrupted
        known = self.eta_seconds == self.eta_seconds  # not NaN
        eta = f", about {_duration(self.eta_seconds)} left" if remaining and known else ""
        parts = [f"{self.done} done", f"{self.running} running", f"{self.failed} failed", f"{self.pending} pending"]
        if self.interrupted:
            parts.append(f"{self.interrupted} interrupted")
        return f"sweep {self.name!r}: {self.total} trials: " + ", ".join(parts) + eta


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"


def resolve_spec(spec: Any) -> dict[str, Any]:
    """A validated spec from a dict, a dataclass (its ``asdict``), a TOML/YAML path, or ``"builtin:NAME"``."""
    if isinstance(spec, (str, Path)) and str(spec).startswith("builtin:"):
        from deepscope.sweep.studies import builtin_spec

        return builtin_spec(str(spec)[len("builtin:") :])
    if isinstance(spec, (str, Path)):
        return read_spec(spec)
    if isinstance(spec, Mapping):
        return parse_spec(spec)
    if dataclasses.is_dataclass(spec) and not isinstance(spec, type):
        return parse_spec(dataclasses.asdict(spec))
    raise DeepscopeError(
        f"A sweep spec must be a dict, a dataclass, a .toml/.yaml path or 'builtin:NAME'. Got {type(spec).__name__}."
    )


def _check_data(spec: Mapping[str, Any]) -> None:
    """Load the dataset once and check that every train_size fits, before anything is trained."""
    from deepscope.sweep.spec import SpecError
    from deepscope.sweep.trial import _load_dataset

    dataset = _load_dataset(canonical_json(spec["dataset"]))
    sizes = spec["search"]["grid"].get("data.train_size", [spec["data"]["train_size"]])
    sizes = sizes if isinstance(sizes, list) else [sizes.get("int_uniform", [0, 0])[1]]
    too_big = [s for s in sizes if s is not None and s > len(dataset.x_train)]
    if too_big:
        raise SpecError(
            [("data.train_size", f"{max(too_big)} exceeds the {len(dataset.x_train)} training examples of the dataset")]
        )
    if dataset.task != "classification":
        raise SpecError([("dataset.name", f"sweeps train classifiers; {dataset.name!r} is a {dataset.task} dataset")])


def run(
    spec: Any,
    store: str | Path = "sweep.db",
    *,
    executor: str = "local",
    workers: int = 1,
    address: str | None = None,
    gpus: float = 0.0,
    retry_failed: bool = False,
    extend: bool = False,
    progress: bool = True,
) -> SweepStatus:
    """Run (or resume) a sweep and return its status when every trial has run once.

    Args:
        spec: a dict, a ``.toml``/``.yaml`` path or ``"builtin:NAME"`` (see :mod:`deepscope.sweep.studies`).
        store: the SQLite file (created if missing; its artifacts go to ``<store>.artifacts/``).
        executor: "local" or "ray". workers: local processes (1: in this process).
        address: Ray cluster address ("auto", "ray://host:port"; None starts a local instance).
        gpus: GPUs each Ray task declares.
        retry_failed: rerun failed trials as well as pending ones.
        extend: accept a spec that keeps every stored trial and adds new ones.
        progress: a progress bar over trials (ETA and a live failure count) on stderr.
    """
    spec = resolve_spec(spec)
    configs = expand(spec)
    check_executor(executor, workers, spec["execution"]["threads"])
    _check_data(spec)
    with SweepStore(store) as sweep:
        sweep.lock()
        # the executor is built (Ray started, its resources checked) before the store records the spec,
        # so a refused executor leaves the store as it was
        runner = make_executor(
            executor, workers=workers, threads=spec["execution"]["threads"], address=address, gpus=gpus
        )
        try:
            _accept_spec(sweep, spec, configs, extend, Path(store).name)
            sweep.reset_interrupted()
            jobs = sweep.todo(retry_failed)
            with sweep.transaction():
                sweep.db.execute("INSERT OR REPLACE INTO meta VALUES ('last_workers', ?)", (str(workers),))
            _drive(sweep, runner, jobs, progress, spec["name"])
        finally:
            runner.close()
        return _status(sweep)


def _accept_spec(sweep: SweepStore, spec: dict[str, Any], configs: list, extend: bool, name: str) -> None:
    """Record the spec in a new store, accept the same spec, or an extension with ``extend``; refuse others."""
    stored = sweep.spec()
    if stored is None:
        sweep.add_spec(spec, configs)
        return
    if canonical_json(stored) == canonical_json(spec):
        return
    old = {trial_key(c) for c in expand(stored)}
    new = {trial_key(c) for c in configs}
    if not extend or not old <= new:
        reason = "" if old <= new else f" ({len(old - new)} stored trials are not in the new spec)"
        raise StoreError(
            f"The store {name} holds a different spec{reason}. Use a new --store for a new sweep"
            + (", or --extend to add the new grid points to this one." if old <= new else ".")
        )
    sweep.add_spec(spec, configs)


def _drive(sweep: SweepStore, runner: Any, jobs: list, progress: bool, name: str) -> None:
    from tqdm.auto import tqdm

    failures = 0
    bar = tqdm(total=len(jobs), desc=f"sweep {name}", unit="trial", disable=not progress or not jobs)
    try:
        for key, _ in jobs:
            sweep.mark_running(key)
        for _key, output in runner.run(jobs):
            sweep.finish(output)
            failures += output.error is not None
            bar.update(1)
            bar.set_postfix(failed=failures)
    finally:
        bar.close()


def status(store: str | Path) -> SweepStatus:
    """The counts, failures and ETA of a sweep store (read-only; works while a run is going on)."""
    with SweepStore(store, create=False) as sweep:
        return _status(sweep)


def _status(sweep: SweepStore) -> SweepStatus:
    counts = sweep.counts()
    alive = sweep.is_locked()
    trials = sweep.trials()
    times = [t["finished"] - t["started"] for t in trials if t["status"] == "done" and t["started"] and t["finished"]]
    mean = sum(times) / len(times) if times else float("nan")
    row = sweep.db.execute("SELECT value FROM meta WHERE key='last_workers'").fetchone()
    workers = int(row[0]) if row else 1
    running = counts["running"] if alive else 0
    interrupted = 0 if alive else counts["running"]
    remaining = counts["pending"] + counts["running"]
    spec = sweep.spec() or {}
    failures = [
        (t["key"], (t["error"] or "").splitlines()[0] if t["error"] else "") for t in trials if t["status"] == "failed"
    ]
    return SweepStatus(
        name=spec.get("name", "sweep"),
        total=sum(counts.values()),
        done=counts["done"],
        failed=counts["failed"],
        pending=counts["pending"],
        running=running,
        interrupted=interrupted,
        mean_trial_seconds=mean,
        eta_seconds=remaining * mean / workers if times else float("nan"),
        failures=failures,
    )


def load(store: str | Path, *, include_unfinished: bool = False, stderr: bool = False):
    """The sweep as a pandas DataFrame: one row per trial, one column per setting and per metric.

    Settings are the searched keys (``model.width``, ``train.lr``, ...) plus ``seed``; metrics
    keep their names (``gap``, ``measures.log_spec_norm``, ...). ``stderr=True`` adds a
    ``<metric>.stderr`` column where a metric has standard errors. Only finished trials by default.
    """
    try:
        import pandas as pd
    except ModuleNotFoundError as error:
        raise DeepscopeError('sweep.load needs pandas: pip install "deepscope[pandas]".') from error

    with SweepStore(store, create=False) as sweep:
        trials, results = sweep.trials(), sweep.results()
        spec = sweep.spec() or {}
    searched = list(spec.get("search", {}).get("grid", {}))
    rows = []
    for trial in trials:
        if trial["status"] != "done" and not include_unfinished:
            continue
        config = json.loads(trial["config_json"])
        row: dict[str, Any] = {"key": trial["key"], "status": trial["status"]}
        for path in searched:
            section, name = path.split(".", 1)
            row[path] = config[section][name]
        row["seed"] = config["seed"]
        row["stopped_by"] = trial["stopped_by"]
        row["seconds"] = (trial["train_seconds"] or 0.0) + (trial["analysis_seconds"] or 0.0)
        for metric, (value, error) in sorted(results.get(trial["key"], {}).items()):
            row[metric] = float("nan") if value is None else value
            if stderr and error is not None:
                row[f"{metric}.stderr"] = error
        rows.append(row)
    return pd.DataFrame(rows)
