"""Sweep executors: trials per minute of the same trials, local (1 and 2 workers) and Ray.

One sweep of 8 trials shaped like those of the built-in ``generalization-small`` study (mnist1d
MLPs on 500 training examples, widths 32/128 x learning rates 0.01/0.05 x 2 seeds, one torch thread
per trial, each trained to train cross-entropy 0.01 (at most 300 epochs), then every measure of
``deepscope.generalization.measures`` and the gap; 1-5 s per trial) is run into a fresh store by:

* ``local, 1 worker`` — in this process, one trial after the other;
* ``local, 2 workers`` — a spawn process pool (includes starting the two workers);
* ``Ray, own instance`` — ``sweep.run(..., executor="ray")`` as the CLI runs it with no cluster:
  starts a local Ray instance (all cores: 2 here), runs the trials as tasks, shuts Ray down;
* ``Ray, warm instance`` — the same on a Ray instance started beforehand (``num_cpus=2``): the
  executor's cost once Ray's start-up is paid (as on a cluster that is already up).

Same process, same trials, ``--rounds`` rounds (3 by default) in alternating order (the order
reverses every round); the ratios are ratios of medians. Every run's results are checked to be
bit-identical to the first local run's (metrics and weights files). The 1-minute load average is
recorded before each run: the machine's 2 cores are shared, so a run under load is slower; the CPU
seconds of every process involved (this one, its reaped children, and its live descendants such as
Ray's daemons and workers, read from ``/proc`` just before Ray stops) are recorded too, as a
measure of the work each executor adds that the other load disturbs far less.

Run: ``python -m bench.sweep_executors`` (about 4-5 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import struct
import tempfile
import time
from pathlib import Path

import torch

from bench.harness import record

COMMAND = "python -m bench.sweep_executors"
TRIALS = 8
SPEC = {
    "name": "bench-executors",
    "seeds": [0, 1],
    "dataset": {"name": "mnist1d", "n_samples": 2000, "test_fraction": 0.5},
    "data": {"train_size": 500},
    "model": {"arch": "mlp", "width": 64, "depth": 2},
    "train": {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "batch_size": 32, "max_epochs": 300, "stop_loss": 0.01},
    "search": {"grid": {"model.width": [32, 128], "train.lr": [0.01, 0.05]}},
    "analyses": [
        {"name": "gap"},
        {"name": "measures", "options": {"max_samples": 500, "sharpness_samples": 4, "bisection_steps": 6, "seed": 0}},
    ],
    "execution": {"threads": 1},
}


def _contents(store: Path) -> tuple[dict, dict]:
    """Every stored metric as its exact bits, and every weights file's bytes."""
    from deepscope.sweep import SweepStore

    with SweepStore(store, create=False) as opened:
        results, trials = opened.results(), opened.trials()

    def bits(value):
        return None if value is None else struct.pack("<d", value)

    metrics = {key: {m: (bits(v), bits(e)) for m, (v, e) in rows.items()} for key, rows in results.items()}
    artifacts = store.with_name(store.name + ".artifacts")
    weights = {t["key"]: (artifacts / f"{t['key']}.safetensors").read_bytes() for t in trials}
    return metrics, weights


def _cpu_seconds() -> float:
    """CPU seconds (user + system) of this process, its reaped children, and its live descendants.

    Live descendants are read from ``/proc`` with their own reaped children (``cutime``/``cstime``):
    Ray's workers are children of its raylet, not of this process, and are alive until Ray stops.
    """
    tick = os.sysconf("SC_CLK_TCK")
    own = resource.getrusage(resource.RUSAGE_SELF)
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = own.ru_utime + own.ru_stime + reaped.ru_utime + reaped.ru_stime
    parents, times = {}, {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
            times[int(entry.name)] = sum(int(f) for f in fields[11:15]) / tick  # utime stime cutime cstime
    for pid in times:
        ancestor = parents.get(pid, 0)
        while ancestor > 1 and ancestor != os.getpid():
            ancestor = parents.get(ancestor, 0)
        if ancestor == os.getpid() and pid != os.getpid():
            total += times[pid]
    return total


def worker_startup_note() -> str:
    """Measure what a fresh worker pays before its first trial, and say how to read the table."""
    import subprocess
    import sys

    code = (
        "import json, torch; from deepscope.registry import load_all_analyses; load_all_analyses(); "
        "from deepscope.sweep.trial import _load_dataset; "
        f"_load_dataset(json.dumps({{**{SPEC['dataset']!r}, 'seed': 0}}, sort_keys=True))"
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-c", code], check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    startup = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return (
        "Reading: `local, 1 worker` runs the trials in the benchmark's own process, where torch, deepscope, "
        "the analysis registry and the generated dataset stay loaded from one round to the next; every pool "
        f"or Ray worker is a fresh interpreter that first spends {startup:.1f} s of CPU importing torch and "
        "deepscope, loading the analysis registry and generating the dataset (measured in a subprocess). "
        "When the trials are short that start-up outweighs them and 2 workers are slower than 1; the longer "
        "the trials, the closer 2 workers get to twice the rate. Wall times on a shared 2-core machine move "
        "with the other work (see the load average and the spread between rounds); CPU times are the steadier "
        "comparison of the executors' overhead."
    )


def _run(kind: str, store: Path) -> dict[str, float]:
    """One timed sweep: wall seconds, CPU seconds of every process involved, Ray's start/stop seconds."""
    import ray

    import deepscope.sweep as sweep

    timings: dict[str, float] = {"load": os.getloadavg()[0]}
    cpu_before = _cpu_seconds()
    if kind == "ray-warm":
        start = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        timings["ray_init"] = time.perf_counter() - start
    samples: list[float] = []
    shutdown = ray.shutdown

    def sampled_shutdown(*args, **kwargs):  # Ray's CPU is read just before its processes go away
        samples.append(_cpu_seconds())
        return shutdown(*args, **kwargs)

    ray.shutdown = sampled_shutdown
    try:
        start = time.perf_counter()
        if kind == "local-1":
            status = sweep.run(SPEC, store, workers=1, progress=False)
        elif kind == "local-2":
            status = sweep.run(SPEC, store, workers=2, progress=False)
        else:
            status = sweep.run(SPEC, store, executor="ray", progress=False)
        timings["seconds"] = time.perf_counter() - start
        if kind == "ray-warm":
            start = time.perf_counter()
            ray.shutdown()
            timings["ray_shutdown"] = time.perf_counter() - start
    finally:
        ray.shutdown = shutdown
    timings["cpu"] = (samples[0] if samples else _cpu_seconds()) - cpu_before
    if (status.done, status.failed) != (TRIALS, 0):
        raise RuntimeError(f"{kind}: {status.summary()}; first failures: {status.failures[:2]}")
    return timings


LABELS = {
    "local-1": "local, 1 worker",
    "local-2": "local, 2 workers",
    "ray-own": "Ray, own instance (start + run + stop)",
    "ray-warm": "Ray, warm instance (start-up excluded)",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    torch.set_num_threads(1)
    kinds = list(LABELS)
    runs: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
    reference = None
    identical = True
    with tempfile.TemporaryDirectory() as folder:
        for round_index in range(args.rounds):
            order = kinds if round_index % 2 == 0 else kinds[::-1]
            for kind in order:
                store = Path(folder) / f"{kind}-{round_index}.db"
                timings = _run(kind, store)
                runs[kind].append(timings)
                contents = _contents(store)
                reference = reference or contents
                identical = identical and contents == reference
                print(
                    f"round {round_index} {kind:9s} {timings['seconds']:6.1f} s wall, {timings['cpu']:6.1f} s CPU"
                    f"  (load {timings['load']:.2f})"
                )
    median = {kind: statistics.median(t["seconds"] for t in runs[kind]) for kind in kinds}
    ray_init = statistics.median(t["ray_init"] for t in runs["ray-warm"])
    ray_shutdown = statistics.median(t["ray_shutdown"] for t in runs["ray-warm"])
    loads = [t["load"] for kind in kinds for t in runs[kind]]
    agreement = "bit-identical metrics and weights" if identical else "RESULTS DIFFER"
    rows = [
        _row("8 trials: local 2 workers vs 1 (scaling)", "local, 1 worker", median["local-2"], median["local-1"],
             args.rounds, agreement, "spawn pool; includes starting the 2 workers"),
        _row("8 trials: Ray own local instance vs local 2 workers", "local, 2 workers", median["ray-own"],
             median["local-2"], args.rounds, agreement,
             f"includes Ray start ({ray_init:.1f} s) and stop ({ray_shutdown:.1f} s)"),
        _row("8 trials: Ray warm instance vs local 2 workers", "local, 2 workers", median["ray-warm"],
             median["local-2"], args.rounds, agreement, "Ray start-up excluded"),
    ]  # fmt: skip
    cpu = {kind: statistics.median(t["cpu"] for t in runs[kind]) for kind in kinds}
    table = [
        "| executor | median wall time | trials per minute | runs (s) | median CPU time, all processes |",
        "|---|---|---|---|---|",
    ]
    for kind in kinds:
        times = ", ".join(f"{t['seconds']:.1f}" for t in runs[kind])
        table.append(
            f"| {LABELS[kind]} | {median[kind]:.1f} s | {60 * TRIALS / median[kind]:.1f} | {times} | {cpu[kind]:.1f} s |"
        )
    overhead_own = median["ray-own"] / median["local-2"] - 1
    overhead_warm = median["ray-warm"] / median["local-2"] - 1
    verdict = (
        f"Target: Ray within 15% of local on 2 cores. Ray with its own instance takes {overhead_own:+.0%} "
        f"versus local with 2 workers; with the start-up excluded (a Ray that is already up) {overhead_warm:+.0%}. "
        f"Ray's start costs {ray_init:.1f} s and its stop {ray_shutdown:.1f} s (medians), paid once per sweep: "
        f"{(ray_init + ray_shutdown) / median['local-2']:.0%} of this {TRIALS}-trial sweep's local 2-worker time; "
        f"at this trial size (about {median['local-1'] / TRIALS:.1f} s each) it would be "
        f"{(ray_init + ray_shutdown) / (median['local-2'] * 96 / TRIALS):.0%} of a 96-trial sweep. "
        f"CPU time, which the other work on the machine disturbs far less than wall time: Ray "
        f"{cpu['ray-own']:.1f} s (its daemons and workers included, start-up included) against {cpu['local-2']:.1f} s "
        f"for local with 2 workers ({cpu['ray-own'] / cpu['local-2'] - 1:+.0%}) and {cpu['local-1']:.1f} s in one "
        "process."
    )
    extra = (
        f"{TRIALS} trials (mnist1d MLPs, widths 32/128 x lr 0.01/0.05 x 2 seeds, 500 training examples, "
        "stop at train cross-entropy 0.01 or 300 epochs, then all measures and the gap), 1 torch thread per trial, "
        f"{args.rounds} rounds in alternating order, medians. 1-minute load average before the runs: "
        f"{min(loads):.2f} to {max(loads):.2f} (2 cores shared with other work).\n\n"
        + "\n".join(table)
        + "\n\n"
        + verdict
        + "\n\n"
        + worker_startup_note()
    )
    path = record("sweep_executors", rows, command=COMMAND, extra_markdown=extra)
    print(extra)
    print(f"wrote {path}")


def _row(task, reference_name, ours, reference, repeats, agreement, notes):
    return {
        "task": task,
        "reference": reference_name,
        "deepscope_median_s": ours,
        "reference_median_s": reference,
        "speedup": reference / ours,
        "repeats": repeats,
        "agreement": agreement,
        "notes": notes,
    }


if __name__ == "__main__":
    main()
