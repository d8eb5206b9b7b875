"""Executors decide where trials run, never what they compute: the local executor, the checks, the factory.

The Ray executor is tested in test_ray.py (it needs Ray and starts a local instance)."""

from __future__ import annotations

import os

import pytest

from deepscope.errors import InvalidParameterError
from deepscope.sweep import executors
from deepscope.sweep.executors import LocalExecutor, _failed, check_executor, default_threads, make_executor
from deepscope.sweep.trial import TrialOutput


def test_default_threads_share_the_cores():
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert default_threads(1) == cores and default_threads(cores) == 1 and default_threads(10 * cores) == 1
    assert default_threads(0) == cores  # never a division by zero


def test_the_local_executor_runs_each_job_in_order_with_its_threads(monkeypatch):
    seen = []

    def fake_trial(config, threads):
        seen.append((config["n"], threads))
        return TrialOutput(f"k{config['n']}", {"n": (float(config["n"]), None)}, None, None, 0.0, 0.0, None, "")

    monkeypatch.setattr(executors, "run_trial", fake_trial)
    executor = make_executor("local", workers=1, threads=1)
    assert isinstance(executor, LocalExecutor) and executor.name == "local"
    results = list(executor.run([("a", {"n": 1}), ("b", {"n": 2})]))
    executor.close()
    assert [key for key, _ in results] == ["a", "b"] and seen == [(1, 1), (2, 1)]
    assert results[1][1].metrics == {"n": (2.0, None)}


def test_a_lost_worker_is_a_failed_trial():
    output = _failed("k", MemoryError("killed"))
    assert output.key == "k" and output.error == "MemoryError: killed" and output.weights is None


def test_check_executor():
    check_executor("local", 1, 1)
    with pytest.raises(InvalidParameterError, match="'executor' parameter of sweep.run must be 'local' or 'ray'"):
        check_executor("dask", 1, 1)
    for workers in (0, True, 1.5):
        with pytest.raises(InvalidParameterError, match="'workers' parameter of sweep.run must be an int >= 1"):
            check_executor("local", workers, 1)
    cores = default_threads(1)
    with pytest.raises(InvalidParameterError, match=rf"at most {cores} \({cores} cores / 1 thread"):
        check_executor("local", cores + 1, 1)
    check_executor("ray", cores + 1, 1)  # Ray places tasks itself: a cluster may have more cores
