import json
import sqlite3

import pytest
import torch
from safetensors.torch import load_file

import deepscope.sweep as sweep
from deepscope.errors import DeepscopeError
from deepscope.sweep import SpecError, StoreError, SweepStore, expand, parse_spec, run_trial, trial_key
from tests.sweep.conftest import tiny_spec


def results_of(store):
    with SweepStore(store, create=False) as opened:
        return opened.results(), {t["key"]: t for t in opened.trials()}


def test_run_records_every_trial_and_a_rerun_does_nothing(tmp_path, spec):
    store = tmp_path / "s.db"
    status = sweep.run(spec, store, progress=False)
    assert (status.total, status.done, status.failed, status.pending) == (4, 4, 0, 0)
    results, trials = results_of(store)
    assert all(t["attempts"] == 1 and t["status"] == "done" for t in trials.values())
    for key, metrics in results.items():
        assert {"gap", "train_error", "test_error", "epochs_run", "spectral_metrics.valid_layers"} <= set(metrics)
        weights = load_file(store.with_name("s.db.artifacts") / f"{key}.safetensors")
        assert any(name.endswith("weight") for name in weights)
    sweep.run(spec, store, progress=False)
    _, again = results_of(store)
    assert all(t["attempts"] == 1 for t in again.values())  # finished trials are skipped


def test_trial_is_pure_and_a_process_pool_gives_bit_identical_results(tmp_path, spec):
    config = expand(parse_spec(spec))[0]
    first, second = run_trial(config), run_trial(config)
    assert first.metrics == second.metrics and first.weights == second.weights
    sweep.run(spec, tmp_path / "one.db", progress=False)
    try:
        sweep.run(spec, tmp_path / "two.db", workers=2, progress=False)
    except DeepscopeError as error:  # a single-core machine cannot host two workers of one thread
        pytest.skip(str(error))
    one, _ = results_of(tmp_path / "one.db")
    two, _ = results_of(tmp_path / "two.db")
    assert one == two
    for key in one:
        a = (tmp_path / "one.db.artifacts" / f"{key}.safetensors").read_bytes()
        assert a == (tmp_path / "two.db.artifacts" / f"{key}.safetensors").read_bytes()


def test_label_noise_and_train_size(spec):
    from deepscope.sweep.trial import trial_data

    config = expand(parse_spec(spec))[0]
    clean = trial_data(config)
    assert len(clean.x_train) == 120
    config["data"]["label_noise"] = 0.25
    noisy = trial_data(config)
    assert torch.equal(clean.x_train, noisy.x_train)
    assert int((clean.y_train != noisy.y_train).sum()) == 30  # exactly 25%, each moved to another class
    config["seed"] = 1
    assert not torch.equal(trial_data(config).y_train, noisy.y_train)  # the noise follows the trial seed


def test_failed_trials_are_recorded_and_retried_and_the_sweep_goes_on(tmp_path):
    # width 1 has 1*64+1+10+10 = 85 parameters < k=100 eigenvalues: those trials fail; width 16 succeeds.
    spec = tiny_spec(**{"search.grid": {"model.width": [1, 16]}, "seeds": [0]})
    spec["analyses"] = [{"name": "hessian_eigenvalues", "options": {"k": 100, "max_samples": 32}}]
    status = sweep.run(spec, tmp_path / "s.db", progress=False)
    assert (status.done, status.failed) == (1, 1)
    assert "100" in status.failures[0][1] or "eigen" in status.failures[0][1].lower()
    _, trials = results_of(tmp_path / "s.db")
    failed = next(t for t in trials.values() if t["status"] == "failed")
    assert failed["error"] and failed["attempts"] == 1
    sweep.run(spec, tmp_path / "s.db", progress=False)
    assert results_of(tmp_path / "s.db")[1][failed["key"]]["attempts"] == 1  # not retried without the flag
    sweep.run(spec, tmp_path / "s.db", retry_failed=True, progress=False)
    _, trials = results_of(tmp_path / "s.db")
    assert trials[failed["key"]]["attempts"] == 2
    assert all(t["attempts"] == 1 for t in trials.values() if t["status"] == "done")


def test_a_changed_spec_is_refused_unless_it_extends_the_grid(tmp_path, spec):
    store = tmp_path / "s.db"
    sweep.run(spec, store, progress=False)
    changed = tiny_spec(**{"train.lr": 0.5})
    with pytest.raises(StoreError, match="different spec.*new --store"):
        sweep.run(changed, store, progress=False)
    wider = tiny_spec(**{"search.grid": {"model.width": [4, 8, 16]}})
    with pytest.raises(StoreError, match="--extend"):
        sweep.run(wider, store, progress=False)
    status = sweep.run(wider, store, extend=True, progress=False)
    assert (status.total, status.done) == (6, 6)
    _, trials = results_of(store)
    assert sum(t["attempts"] for t in trials.values()) == 6  # the 4 old trials were not rerun
    narrower = tiny_spec(**{"search.grid": {"model.width": [4]}})
    with pytest.raises(StoreError, match="not in the new spec"):
        sweep.run(narrower, store, extend=True, progress=False)


def test_data_is_checked_before_anything_runs(tmp_path):
    with pytest.raises(SpecError, match="train_size"):
        sweep.run(tiny_spec(**{"data.train_size": 10**6}), tmp_path / "s.db", progress=False)
    assert not (tmp_path / "s.db").exists()


def test_a_second_run_on_a_locked_store_is_refused(tmp_path, spec):
    store = tmp_path / "s.db"
    with SweepStore(store) as holder:
        holder.lock()
        with pytest.raises(StoreError, match="in use by another"):
            sweep.run(spec, store, progress=False)
        assert sweep.status(store).running == 0  # status reads while the lock is held
    sweep.run(spec, store, progress=False)  # released: runs


def test_newer_schema_and_foreign_databases_are_refused(tmp_path, spec):
    store = tmp_path / "s.db"
    sweep.run(spec, store, progress=False)
    with sqlite3.connect(store) as db:
        db.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    with pytest.raises(StoreError, match="newer deepscope"):
        sweep.status(store)
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE t (x)")
    with pytest.raises(StoreError, match="not a deepscope sweep store"):
        sweep.status(other)
    (tmp_path / "junk.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a deepscope sweep store"):
        sweep.status(tmp_path / "junk.db")
    with pytest.raises(StoreError, match="No sweep store"):
        sweep.status(tmp_path / "missing.db")


def test_load_gives_one_row_per_trial_with_settings_and_metrics(tmp_path, spec):
    pytest.importorskip("pandas")
    store = tmp_path / "s.db"
    sweep.run(spec, store, progress=False)
    frame = sweep.load(store)
    assert len(frame) == 4
    assert {"key", "model.width", "seed", "gap", "test_error", "stopped_by"} <= set(frame.columns)
    assert sorted(frame["model.width"].unique()) == [4, 8]
    keys = {trial_key(c) for c in expand(parse_spec(spec))}
    assert set(frame["key"]) == keys
    with_errors = sweep.load(store, stderr=True)
    assert len(with_errors) == 4


def test_hessian_trace_metric_carries_its_standard_error(tmp_path):
    spec = tiny_spec(**{"seeds": [0], "search.grid": {"model.width": [4]}})
    # 60 products: 10 for the Hutch++ sketch, the rest as 40 Hutchinson probes with a standard error
    spec["analyses"] = [{"name": "hessian_trace", "options": {"max_samples": 32, "max_hvps": 60}}]
    sweep.run(spec, tmp_path / "s.db", progress=False)
    results, _ = results_of(tmp_path / "s.db")
    (metrics,) = results.values()
    value, error = metrics["hessian_trace.trace"]
    assert value > 0 and error is not None and error >= 0
    assert json.loads(json.dumps(metrics))  # plain numbers


def test_a_refused_executor_leaves_the_store_as_it_was(tmp_path, spec, monkeypatch):
    import deepscope.sweep.runner as runner

    store = tmp_path / "s.db"
    sweep.run(spec, store, progress=False)

    def refuse(*args, **kwargs):
        raise DeepscopeError("no executor today")

    monkeypatch.setattr(runner, "make_executor", refuse)
    changed = tiny_spec(**{"execution.threads": 1, "train.lr": 0.5})
    with pytest.raises(DeepscopeError, match="no executor today"):
        sweep.run(changed, store, progress=False)
    with SweepStore(store, create=False) as opened:
        assert opened.db.execute("SELECT COUNT(*) FROM specs").fetchone()[0] == 1
