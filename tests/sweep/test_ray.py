"""The Ray executor against the local one: same trials, same bits; worker crashes; the CLI.

One local Ray instance (``num_cpus=2``, no dashboard, usage statistics off) is shared by the module
(starting one takes several seconds) and shut down at the end, checking that none of its processes
is left behind. The executor's own start-and-stop path (``address=None`` with no Ray running) is
exercised in a subprocess through the real command line, so it cannot disturb the shared instance.
"""

import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

import deepscope.sweep as sweep  # noqa: E402
import deepscope.sweep.runner as runner  # noqa: E402
from deepscope.errors import DeepscopeError  # noqa: E402
from deepscope.sweep import SweepStore, expand, parse_spec, run_trial  # noqa: E402
from deepscope.sweep.executors import RayExecutor, make_executor  # noqa: E402
from tests.sweep.conftest import tiny_spec  # noqa: E402


def _spec():
    """4 trials (2 widths x 2 seeds); hutch++ gives metrics with a standard error, spectral_metrics without."""
    return tiny_spec(
        analyses=[
            {"name": "spectral_metrics"},
            {
                "name": "hessian_trace",
                "options": {"method": "hutchinson", "max_hvps": 12, "min_samples": 6, "rel_tol": 1e-9, "seed": 0},
            },
        ]
    )


def _ray_pids() -> set[int]:
    """Processes of Ray (its binaries, its Python agents and its workers, renamed ``ray::...``)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if command.startswith("ray::") or "site-packages/ray/" in command:
            pids.add(int(entry.name))
    return pids


def _parent(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat.rsplit(")", 1)[1].split()[1])


def _left_behind(before: set[int], *, orphans_only: bool = False) -> set[int]:
    """Ray processes started since ``before`` still alive once they had up to 60 s to exit.

    ``orphans_only``: only those that are not descendants of this process (the shared instance's
    workers may come and go meanwhile; what a finished subprocess leaks is reparented away from us).
    """
    import time

    def alive() -> set[int]:
        pids = _ray_pids() - before
        if orphans_only:
            pids = {pid for pid in pids if not _descends_from_us(pid)}
        return pids

    deadline = time.monotonic() + 60  # an upper bound on shutdown, not a timing assertion
    while (left := alive()) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left


def _descends_from_us(pid: int) -> bool:
    while pid > 1:
        pid = _parent(pid)
        if pid == os.getpid():
            return True
    return False


def run_cli(*args) -> tuple[int, str, str]:
    """``deepscope ARGS`` in this process with captured streams: (exit code, stdout, stderr)."""
    from click.testing import CliRunner

    from deepscope.cli import main

    with CliRunner().isolation() as (stdout, stderr, _):
        code = main([str(arg) for arg in args])
    return code, stdout.getvalue().decode(), stderr.getvalue().decode()


@pytest.fixture(scope="module")
def local_ray():
    if ray.is_initialized():
        pytest.skip("a Ray instance is already running in this process")
    before = _ray_pids()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_USAGE_STATS_ENABLED", "0")
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()
    assert not _left_behind(before), "Ray processes left behind after ray.shutdown()"


@pytest.fixture(scope="module")
def local_store(tmp_path_factory):
    """The 4 trials run by the local executor in this process: the reference results."""
    store = tmp_path_factory.mktemp("local") / "local.db"
    status = sweep.run(_spec(), store, progress=False)
    assert (status.done, status.failed) == (4, 0)
    return store


def _contents(store: Path) -> dict:
    """Every stored number as its exact bits, the weights files as bytes, and the learning curves."""
    with SweepStore(store, create=False) as opened:
        results, trials = opened.results(), opened.trials()
        histories = {t["key"]: opened.history(t["key"]) for t in trials}

    def bits(value):
        return None if value is None else struct.pack("<d", value)

    return {
        "results": {
            key: {metric: (bits(value), bits(error)) for metric, (value, error) in metrics.items()}
            for key, metrics in results.items()
        },
        "weights": {
            t["key"]: (store.parent / f"{store.name}.artifacts" / f"{t['key']}.safetensors").read_bytes()
            for t in trials
            if t["status"] == "done"
        },  # fmt: skip
        "histories": histories,
        "status": {t["key"]: (t["status"], t["stopped_by"], t["epochs_run"]) for t in trials},
    }


@pytest.mark.slow  # about 30 s: a fresh interpreter imports torch and starts its own Ray
def test_the_command_line_starts_and_stops_its_own_local_ray(local_store, tmp_path):
    """No Ray running: `--executor ray` starts a local instance and leaves no process behind."""
    spec = _spec()
    spec["seeds"] = [0]
    spec["search"]["grid"]["model.width"] = [4]
    spec_file = tmp_path / "one.toml"
    spec_file.write_text(_toml(spec))
    before = _ray_pids()
    environment = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    environment.pop("RAY_ADDRESS", None)
    command = [sys.executable, "-m", "deepscope", "sweep", "run", str(spec_file), "--store", str(tmp_path / "own.db")]
    command += ["--executor", "ray"]
    finished = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=300, cwd=tmp_path)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert "1 trials: 1 done" in finished.stdout
    assert not _left_behind(before, orphans_only=True), "the CLI's Ray instance left processes behind"
    [key] = _contents(tmp_path / "own.db")["weights"]
    assert _contents(tmp_path / "own.db")["results"][key] == _contents(local_store)["results"][key]
    assert len(expand(parse_spec(spec))) == 1


def test_ray_executor_gives_bit_identical_results_to_the_local_executor(local_ray, local_store, tmp_path):
    store = tmp_path / "ray.db"
    status = sweep.run(_spec(), store, executor="ray", progress=False)
    assert (status.total, status.done, status.failed) == (4, 4, 0)
    assert ray.is_initialized()  # the caller's instance is used and left running
    local, remote = _contents(local_store), _contents(store)
    assert any(error is not None for metrics in local["results"].values() for _, error in metrics.values())
    assert len(local["weights"]) == 4
    assert remote == local
    with SweepStore(store, create=False) as opened:
        hosts = {t["host"] for t in opened.trials()}
    assert hosts == {os.uname().nodename}


def _crash_after_the_trial(marker: Path, only_once: bool):
    """A trial function whose Ray worker dies (os._exit) after computing, before sending the result back.

    With ``only_once`` the first attempt leaves a marker file and dies; the retry finds it and returns.
    Defined inside a function so that Ray pickles it by value (workers need not import this test).
    """

    def trial(config, threads=1):
        output = run_trial(config, threads)
        if config["model"]["width"] == 8 and config["seed"] == 1:
            if not only_once or not marker.exists():
                marker.touch()
                os._exit(1)
        return output

    return trial


def _crashing_executor(monkeypatch, trial, max_retries):
    class CrashingRayExecutor(RayExecutor):
        trial_function = staticmethod(trial)

    def build(executor, **options):
        assert executor == "ray"
        return CrashingRayExecutor(options["address"], options["threads"], options["gpus"], max_retries=max_retries)

    monkeypatch.setattr(runner, "make_executor", build)


def test_a_worker_killed_mid_trial_is_retried_by_ray(local_ray, local_store, tmp_path, monkeypatch):
    marker = tmp_path / "crashed-once"
    _crashing_executor(monkeypatch, _crash_after_the_trial(marker, only_once=True), max_retries=1)
    store = tmp_path / "retried.db"
    status = sweep.run(_spec(), store, executor="ray", progress=False)
    assert marker.exists()  # the worker did die once
    assert (status.done, status.failed, status.pending) == (4, 0, 0)
    assert _contents(store) == _contents(local_store)


def test_a_worker_killed_every_time_is_recorded_as_failed_and_the_sweep_finishes(
    local_ray, local_store, tmp_path, monkeypatch
):
    marker = tmp_path / "crashed"
    _crashing_executor(monkeypatch, _crash_after_the_trial(marker, only_once=False), max_retries=1)
    store = tmp_path / "failed.db"
    status = sweep.run(_spec(), store, executor="ray", progress=False)
    assert (status.done, status.failed, status.pending, status.running) == (3, 1, 0, 0)
    [(key, error)] = status.failures
    assert "WorkerCrashedError" in error or "died" in error.lower()
    with SweepStore(store, create=False) as opened:
        assert opened.results().get(key, {}) == {}  # no half-written rows for the lost trial
    assert not (tmp_path / "failed.db.artifacts" / f"{key}.safetensors").exists()
    # --retry-failed on a healthy executor completes the sweep with the local executor's numbers
    monkeypatch.undo()
    status = sweep.run(_spec(), store, executor="ray", retry_failed=True, progress=False)
    assert (status.done, status.failed) == (4, 0)
    assert _contents(store) == _contents(local_store)


def test_a_task_no_node_can_hold_is_refused_instead_of_waiting_forever(local_ray):
    with pytest.raises(DeepscopeError, match=r"asks for 3 CPU\(s\).*at most 2 CPU\(s\)"):
        make_executor("ray", threads=3)
    with pytest.raises(DeepscopeError, match=r"1 GPU\(s\).*0 GPU\(s\)"):
        make_executor("ray", gpus=1.0)
    with pytest.raises(DeepscopeError, match="max_retries"):
        RayExecutor(max_retries=-1)
    assert ray.is_initialized()  # a refusal leaves the caller's instance alone


@pytest.mark.parametrize(
    ("raised", "fragment"),
    [
        (ValueError("Invalid address format: nonsense"), "Invalid address format"),  # what Ray raises at once
        (SystemExit(15), "Ray gave up connecting"),  # what Ray does after ~2 min on a GCS address that never answers
    ],
)
def test_an_unreachable_address_is_one_clear_error(raised, fragment, tmp_path, monkeypatch):
    def init(**options):
        raise raised

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
    spec_file = tmp_path / "tiny.toml"
    spec_file.write_text(_toml(_spec()))
    store = tmp_path / "s.db"
    code, _, stderr = run_cli("sweep", "run", spec_file, "--store", store, "--executor", "ray", "--address", "nonsense")
    assert code == 2, stderr
    [line] = stderr.splitlines()
    assert line.startswith("error: Cannot reach the Ray cluster at 'nonsense'") and fragment in line, line


def test_without_ray_installed_the_executor_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ModuleNotFoundError
    spec_file = tmp_path / "tiny.toml"
    spec_file.write_text(_toml(_spec()))
    code, _, stderr = run_cli("sweep", "run", spec_file, "--store", tmp_path / "s.db", "--executor", "ray")
    assert code == 2 and stderr.strip() == 'error: The Ray executor needs Ray: pip install "deepscope[ray]".', stderr


def test_sweep_run_executor_ray_from_the_command_line(local_ray, local_store, tmp_path):
    spec_file = tmp_path / "tiny.toml"
    spec_file.write_text(_toml(_spec()))
    code, stdout, stderr = run_cli("sweep", "run", spec_file, "--store", tmp_path / "cli.db", "--executor", "ray")
    assert code == 0, stderr
    assert "4 trials: 4 done, 0 running, 0 failed, 0 pending" in stdout
    assert _contents(tmp_path / "cli.db")["results"] == _contents(local_store)["results"]
    code, _, stderr = run_cli("sweep", "run", spec_file, "--executor", "ray", "--workers", "2")
    assert code == 2 and stderr.startswith("error: --workers applies to the local executor"), stderr


def _toml(spec: dict) -> str:
    """A tiny TOML writer for the spec dicts of these tests (tables, lists, numbers, strings)."""
    import json

    lines = [f"{key} = {json.dumps(value)}" for key, value in spec.items() if not isinstance(value, (dict, list))]
    lines.append(f"seeds = {json.dumps(spec['seeds'])}")
    for section in ("dataset", "data", "model", "train"):
        lines.append(f"[{section}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in spec[section].items()]
    lines.append("[search.grid]")
    lines += [f'"{path}" = {json.dumps(values)}' for path, values in spec["search"]["grid"].items()]
    for entry in spec["analyses"]:
        lines.append("[[analyses]]")
        lines.append(f"name = {json.dumps(entry['name'])}")
        if entry.get("options"):
            options = ", ".join(f"{key} = {json.dumps(value)}" for key, value in entry["options"].items())
            lines.append(f"options = {{ {options} }}")
    return "\n".join(lines) + "\n"
