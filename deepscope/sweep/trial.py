"""One trial: (config, seed) -> trained weights + metrics. A pure function of its config.

``run_trial(config)``:

1. loads the dataset (``config["dataset"]``, generated from its own seed, so every trial of a sweep
   sees the same examples), keeps the first ``data.train_size`` training examples of a permutation
   drawn from the dataset seed, and replaces a fraction ``data.label_noise`` of their labels by a
   different class drawn uniformly (from the trial seed: the noisy examples differ between seeds);
2. builds the model from ``torch.manual_seed(seed)`` and trains it with :func:`deepscope.train`
   (``max_epochs``, and the stop rule of Jiang et al. 2020: stop when the train cross-entropy
   reaches ``stop_loss``), recording which rule ended training;
3. records the gap metrics (train/test error and loss, ``gap = test error - train error``,
   epochs run, whether the stop rule was met, parameter count) and runs every analysis of
   ``config["analyses"]`` on the trained model (:mod:`deepscope.sweep.analyses`).

The trial runs with ``threads`` torch threads (the executor's choice, 1 by default) and restores
the process's torch thread count and random state afterwards. On CPU the same config, seed and
thread count give bit-identical weights and metrics, in any process or on any Ray worker.
A trial that raises returns a :class:`TrialOutput` with ``error`` set instead of raising.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import socket
import time
import traceback
from collections.abc import Mapping
from typing import Any

import torch

from deepscope.sweep.analyses import Metric, run_analysis
from deepscope.sweep.spec import canonical_json, trial_key

__all__ = [
    "TrialOutput",
    "run_trial",
    "trial_data",
    "build_model",
    "train_model",
    "state_bytes",
    "history_record",
    "train_and_analyse",
]


@dataclasses.dataclass(frozen=True)
class TrialOutput:
    """What a trial sends back to the driver (picklable; the driver alone writes the store).

    Attributes:
        key: the trial key. metrics: name -> (value, standard error or None).
        weights: the trained ``state_dict`` serialised with safetensors (None on failure).
        history: per-epoch curves (``TrainingHistory.to_dict()``), stopped_by, epochs_run.
        train_seconds, analysis_seconds: wall-clock time of each phase.
        error: ``"ExceptionType: message"`` and the traceback's last lines, when the trial failed.
        host: the machine that ran it.
    """

    key: str
    metrics: dict[str, Metric]
    weights: bytes | None
    history: dict[str, Any] | None
    train_seconds: float
    analysis_seconds: float
    error: str | None
    host: str


@functools.lru_cache(maxsize=4)
def _load_dataset(dataset_json: str):
    from deepscope.datasets import load

    options = json.loads(dataset_json)
    return load(
        options["name"], seed=options["seed"], n_samples=options["n_samples"], test_fraction=options["test_fraction"]
    )


def trial_data(config: Mapping[str, Any]):
    """The trial's DatasetSplits: the dataset, its training subset, and the label noise."""
    from deepscope.data import DatasetSplits

    dataset = _load_dataset(canonical_json(config["dataset"]))
    x, y = dataset.x_train, dataset.y_train
    size = config["data"]["train_size"]
    if size is not None:
        if size > len(x):
            from deepscope.errors import DataError

            raise DataError(f"data.train_size is {size} but the dataset has only {len(x)} training examples.")
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(config["dataset"]["seed"]))
        x, y = x[order[:size]], y[order[:size]]
    noise = config["data"]["label_noise"]
    if noise > 0:
        y = y.clone()
        generator = torch.Generator().manual_seed(10_007 + config["seed"])
        flipped = torch.randperm(len(y), generator=generator)[: round(noise * len(y))]
        shift = torch.randint(1, dataset.num_classes, (len(flipped),), generator=generator)
        y[flipped] = (y[flipped] + shift) % dataset.num_classes
    return DatasetSplits(**{**_fields(dataset), "x_train": x, "y_train": y, "mask_train": None})


def _fields(dataset) -> dict[str, Any]:
    return {f.name: getattr(dataset, f.name) for f in dataclasses.fields(dataset)}


def build_model(config: Mapping[str, Any], dataset):
    """The trial's model from ``config["model"]`` (an MLP's width and depth become its widths); call
    ``torch.manual_seed(config["seed"])`` first for the trial's initial weights."""
    from deepscope.models import build

    model = dict(config["model"])
    arch = model.pop("arch")
    if arch == "mlp":
        width, depth = model.pop("width"), model.pop("depth")
        model["widths"] = [width] * depth
    return build(arch, dataset.input_shape, dataset.num_classes, **model)


def run_trial(config: Mapping[str, Any], threads: int = 1) -> TrialOutput:
    """Train and analyse one trial; never raises (a failure is returned in ``error``)."""
    key = trial_key(config)
    previous_threads = torch.get_num_threads()
    started = time.perf_counter()
    train_seconds = analysis_seconds = 0.0
    try:
        torch.set_num_threads(threads)
        with torch.random.fork_rng(devices=[]):
            if config.get("kind", "train") == "train":
                weights, history, metrics, train_seconds, analysis_seconds = train_and_analyse(config)
            else:  # an experiment's own trial kind (deepscope.sweep.kinds)
                from deepscope.sweep.kinds import kind_module

                torch.manual_seed(config["seed"])
                metrics, history, weights = kind_module(config["kind"]).run_kind(config)
                train_seconds = time.perf_counter() - started
        return TrialOutput(key, metrics, weights, history, train_seconds, analysis_seconds, None, socket.gethostname())
    except Exception as error:  # a failed trial is data: recorded, and the sweep goes on
        lines = traceback.format_exception(type(error), error, error.__traceback__)
        text = f"{type(error).__name__}: {error}\n" + "".join(lines[-6:])
        if not train_seconds:
            train_seconds = time.perf_counter() - started
        return TrialOutput(key, {}, None, None, train_seconds, analysis_seconds, text, socket.gethostname())
    finally:
        torch.set_num_threads(previous_threads)


def train_model(config: Mapping[str, Any], dataset, *, model=None, epochs: int | None = None, stop_rule: bool = True):
    """Train the trial's model with ``config["train"]``; returns the :class:`~deepscope.models.TrainingRun`.

    ``model``: a model already built by the caller (default: :func:`build_model` from the trial seed);
    ``epochs``: instead of ``train.max_epochs``; ``stop_rule=False`` ignores ``train.stop_loss``.
    """
    from deepscope.models import train

    if model is None:
        torch.manual_seed(config["seed"])
        model = build_model(config, dataset)
    recipe = config["train"]
    return train(
        model,
        dataset,
        epochs=recipe["max_epochs"] if epochs is None else epochs,
        lr=recipe["lr"],
        optimizer=recipe["optimizer"],
        batch_size=recipe["batch_size"],
        weight_decay=recipe["weight_decay"],
        momentum=recipe["momentum"] if recipe["optimizer"] == "sgd" else 0.0,
        seed=config["seed"],
        stop_loss=recipe["stop_loss"] if stop_rule else None,
    )


def state_bytes(model: torch.nn.Module) -> bytes:
    """The model's ``state_dict`` serialised with safetensors (what the store keeps as weights)."""
    from safetensors.torch import save

    return save({name: tensor.detach().contiguous() for name, tensor in model.state_dict().items()})


def history_record(run) -> dict[str, Any]:
    """A training run's curves as stored with the trial: the history, the stop rule that ended it, epochs run."""
    record = {**run.history.to_dict(), "stopped_by": run.config["stopped_by"], "epochs_run": run.config["epochs_run"]}
    record.pop("monitor", None)
    return record


def train_and_analyse(config: Mapping[str, Any]):
    """The "train" trial: ``(weights, history, metrics, train_seconds, analysis_seconds)``."""
    from deepscope.problem import Problem

    started = time.perf_counter()
    dataset = trial_data(config)
    run = train_model(config, dataset)
    train_seconds = time.perf_counter() - started
    history = run.history
    metrics: dict[str, Metric] = {
        "train_loss": (history.train_loss[-1], None),
        "train_error": (1.0 - history.train_accuracy[-1], None),
        "epochs_run": (float(run.config["epochs_run"]), None),
        "reached_stop_loss": (float(run.config["stopped_by"] == "stop_loss"), None),
        "parameters": (float(sum(p.numel() for p in run.model.parameters())), None),
    }
    if history.n_test:
        metrics["test_loss"] = (history.test_loss[-1], None)
        metrics["test_error"] = (1.0 - history.test_accuracy[-1], None)
        metrics["gap"] = (metrics["test_error"][0] - metrics["train_error"][0], None)
        metrics["loss_gap"] = (history.test_loss[-1] - history.train_loss[-1], None)
    started = time.perf_counter()
    problem = Problem.from_dataset(run.model, dataset, init_state=run.init_state)
    for entry in config["analyses"]:
        metrics.update(run_analysis(entry, problem, dataset.x_test))
    analysis_seconds = time.perf_counter() - started
    return state_bytes(run.model), history_record(run), metrics, train_seconds, analysis_seconds
