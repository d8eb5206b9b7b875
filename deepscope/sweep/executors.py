"""Executors decide where trials run, never what they compute.

Each executor takes ``(key, config)`` pairs and yields ``(key, TrialOutput)`` as trials finish, in
any order; the driver alone writes the store. Every trial runs :func:`deepscope.sweep.trial.run_trial`
with the same ``threads`` torch threads, so results are bit-identical between executors.

* :class:`LocalExecutor` — in this process (``workers=1``) or a pool of ``workers`` processes
  (``spawn`` start method: no OpenMP state is inherited through ``fork``).
* :class:`RayExecutor` — Ray tasks (``pip install "deepscope[ray]"``): each declares
  ``num_cpus=threads`` (and ``num_gpus`` when asked); a worker that dies mid-trial is retried by
  Ray (``max_retries``), and a trial still lost after that is returned as failed. ``address=None``
  starts a local Ray instance; ``"auto"`` or ``"ray://host:port"`` joins a cluster.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from typing import Any

from deepscope.errors import DeepscopeError, invalid_parameter
from deepscope.sweep.trial import TrialOutput, run_trial

__all__ = ["LocalExecutor", "RayExecutor", "check_executor", "make_executor", "default_threads"]

Job = tuple[str, dict[str, Any]]


def default_threads(workers: int) -> int:
    """Torch threads per trial so that workers x threads <= the cores this process may use."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, workers))


def _failed(key: str, error: BaseException) -> TrialOutput:
    return TrialOutput(key, {}, None, None, 0.0, 0.0, f"{type(error).__name__}: {error}", "")


class LocalExecutor:
    """Sequential in this process, or a process pool of ``workers``."""

    name = "local"

    def __init__(self, workers: int = 1, threads: int = 1) -> None:
        self.workers, self.threads = workers, threads

    def close(self) -> None:
        """Nothing to release: a pool lives only inside :meth:`run`."""

    def run(self, jobs: Sequence[Job]) -> Iterator[tuple[str, TrialOutput]]:
        if self.workers == 1:
            for key, config in jobs:
                yield key, run_trial(config, self.threads)
            return
        import concurrent.futures
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(self.workers, mp_context=context) as pool:
            futures = {pool.submit(run_trial, config, self.threads): key for key, config in jobs}
            try:
                for future in concurrent.futures.as_completed(futures):
                    key = futures[future]
                    try:
                        yield key, future.result()
                    except Exception as error:  # the worker process died (e.g. killed for memory)
                        yield key, _failed(key, error)
            finally:
                for future in futures:
                    future.cancel()


class RayExecutor:
    """Ray tasks on a local instance or a cluster; results come back to the driver.

    Args:
        address: None starts a local Ray instance (no dashboard, usage statistics off unless the
            environment says otherwise) and shuts it down when :meth:`run` ends; ``"auto"`` or
            ``"ray://host:port"`` joins a cluster. An instance the caller already started with
            ``ray.init`` is used as it is and left running.
        threads: torch threads of each trial, declared as the task's ``num_cpus``.
        gpus: GPUs each task declares. max_retries: Ray's retries of a task whose worker died.
        num_cpus: CPUs of a local instance started here (None: all of this machine's).

    Raises:
        DeepscopeError: Ray is not installed, the cluster cannot be reached, or a task of
            ``threads`` CPUs (``gpus`` GPUs) fits no node of a local instance (it would wait forever).
    """

    name = "ray"
    #: What each Ray task runs; a test may put a wrapper here that kills its worker mid-trial.
    trial_function = staticmethod(run_trial)

    def __init__(
        self,
        address: str | None = None,
        threads: int = 1,
        gpus: float = 0.0,
        max_retries: int = 2,
        num_cpus: int | None = None,
    ) -> None:
        try:
            import ray
        except ModuleNotFoundError as error:
            raise DeepscopeError('The Ray executor needs Ray: pip install "deepscope[ray]".') from error
        if num_cpus is not None and (isinstance(num_cpus, bool) or not isinstance(num_cpus, int) or num_cpus < 1):
            raise invalid_parameter("num_cpus", "RayExecutor", "None or an int >= 1", num_cpus)
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise invalid_parameter("max_retries", "RayExecutor", "an int >= 0", max_retries)
        self.ray = ray
        self.threads, self.gpus, self.max_retries = threads, gpus, max_retries
        self.started_here = False
        if not ray.is_initialized():
            options: dict[str, Any] = {"address": address, "include_dashboard": False, "log_to_driver": False}
            if address is None:
                options["num_cpus"] = num_cpus
            try:
                with _quiet_local_ray():
                    ray.init(**options)
            except (ConnectionError, ValueError) as error:  # no cluster there; an address Ray cannot parse
                raise DeepscopeError(f"Cannot reach the Ray cluster at {address!r}: {error}") from error
            except SystemExit as error:  # Ray exits the process when a GCS address never answers
                raise DeepscopeError(
                    f"Cannot reach the Ray cluster at {address!r}: Ray gave up connecting (exit status {error.code})."
                ) from None
            self.started_here = True
        if address is None:
            self._check_fits()
        self.remote = ray.remote(self.trial_function).options(
            num_cpus=threads, num_gpus=gpus, max_retries=max_retries, retry_exceptions=False
        )

    def _check_fits(self) -> None:
        """On a local instance a task no node can hold waits forever: refuse it now instead."""
        nodes = [node.get("Resources", {}) for node in self.ray.nodes() if node.get("Alive")]
        if any(r.get("CPU", 0) >= self.threads and r.get("GPU", 0) >= self.gpus for r in nodes):
            return
        cpus = max((r.get("CPU", 0) for r in nodes), default=0)
        gpus = max((r.get("GPU", 0) for r in nodes), default=0)
        if self.started_here:
            self.ray.shutdown()
        raise DeepscopeError(
            f"Each Ray task asks for {self.threads} CPU(s) (execution.threads) and {self.gpus:g} GPU(s), "
            f"but the local Ray instance has at most {cpus:g} CPU(s) and {gpus:g} GPU(s) per node; "
            "lower execution.threads or --gpus, or give a cluster --address."
        )

    def run(self, jobs: Sequence[Job]) -> Iterator[tuple[str, TrialOutput]]:
        ray = self.ray
        pending = {self.remote.remote(config, self.threads): key for key, config in jobs}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for reference in done:
                    key = pending.pop(reference)
                    try:
                        yield key, ray.get(reference)
                    except Exception as error:  # retries exhausted: WorkerCrashedError and friends
                        yield key, _failed(key, error)
        finally:
            for reference in pending:
                ray.cancel(reference, force=True)
            self.close()

    def close(self) -> None:
        """Shut down the Ray instance this executor started (a cluster or the caller's instance stays)."""
        if self.started_here:
            self.ray.shutdown()
            self.started_here = False


@contextlib.contextmanager
def _quiet_local_ray() -> Iterator[None]:
    """Ray's usage statistics off while a local instance starts (its processes inherit the setting).

    An explicit ``RAY_USAGE_STATS_ENABLED`` in the environment wins; the variable is restored afterwards.
    """
    if "RAY_USAGE_STATS_ENABLED" in os.environ:
        yield
        return
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    try:
        yield
    finally:
        os.environ.pop("RAY_USAGE_STATS_ENABLED", None)


def check_executor(executor: str, workers: int, threads: int) -> None:
    """Refuse an unknown executor, or a local pool that does not fit the cores, before anything starts."""
    if executor not in ("local", "ray"):
        raise invalid_parameter("executor", "sweep.run", "'local' or 'ray'", executor)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise invalid_parameter("workers", "sweep.run", "an int >= 1", workers)
    cores = default_threads(1)
    if executor == "local" and workers * threads > cores:
        raise invalid_parameter(
            "workers",
            "sweep.run",
            f"at most {max(1, cores // threads)} ({cores} cores / {threads} thread(s) per trial from execution.threads)",
            workers,
        )


def make_executor(
    executor: str,
    *,
    workers: int = 1,
    threads: int = 1,
    address: str | None = None,
    gpus: float = 0.0,
    num_cpus: int | None = None,
) -> LocalExecutor | RayExecutor:
    """Build an executor by name ("local" or "ray").

    ``threads`` comes from the spec (``execution.threads``), not from the executor, so that the
    same trial computes the same numbers everywhere; a local pool must fit the cores
    (``workers x threads <= cores``), otherwise the trials would fight over them. ``num_cpus``
    sizes a local Ray instance started here (ignored by the local executor and by clusters).
    """
    check_executor(executor, workers, threads)
    if executor == "local":
        return LocalExecutor(workers, threads)
    if executor == "ray":
        return RayExecutor(address, threads, gpus, num_cpus=num_cpus)
    raise invalid_parameter("executor", "sweep.run", "'local' or 'ray'", executor)
