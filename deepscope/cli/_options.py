"""Option types and helpers shared by the commands: finite numbers, shapes, model loading, the recorded seed.

Every check here runs before the long work starts, so a bad value is a one-line error in a second.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from deepscope.errors import DataError

__all__ = [
    "FiniteFloat",
    "check_seed",
    "model_options",
    "load_cli_model",
    "load_history",
    "recorded_seed",
    "strip_cwd_from_path",
]

_BUILTIN_HINT = "mlp, cnn2d, cnn1d, resnet, transformer"


class FiniteFloat(click.ParamType):
    """A finite float (``inf`` and ``nan`` are refused), optionally > ``minimum``."""

    name = "float"

    def __init__(self, minimum: float | None = None) -> None:
        self.minimum = minimum

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        if self.minimum is not None and number <= self.minimum:
            self.fail(f"{value} is not > {self.minimum}", param, ctx)
        return number


def _parse_shape(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...] | None:
    """``1,28,28`` (or ``1x28x28``) as a tuple of positive ints."""
    if value is None:
        return None
    parts = [part.strip() for part in value.replace("x", ",").split(",")]
    try:
        shape = tuple(int(part) for part in parts)
    except ValueError:
        raise click.BadParameter(f"'{value}' is not a shape such as 1,28,28 (comma-separated ints)") from None
    if not shape or any(size < 1 for size in shape) or len(shape) > 4:
        raise click.BadParameter(f"'{value}': a shape has 1 to 4 sizes, each >= 1")
    return shape


def _parse_arch_kwargs(ctx: click.Context, param: click.Parameter, value: str | None) -> dict[str, Any] | None:
    """``--arch-kwargs '{"width": 64}'``: a JSON object (finite numbers only)."""
    if value is None:
        return None

    def refuse_constant(name: str) -> Any:
        raise ValueError(f"{name} is not a finite number")

    try:
        parsed = json.loads(value, parse_constant=refuse_constant)
    except ValueError as error:
        raise click.BadParameter(
            f"{value!r} is not JSON ({error}); give an object such as '{{\"width\": 64}}'"
        ) from None
    if not isinstance(parsed, dict):
        raise click.BadParameter(
            f"{value!r} is a JSON {type(parsed).__name__}, not an object; give an object such as '{{\"width\": 64}}'"
        )
    return parsed


def model_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """--arch, --arch-kwargs, --trust-pickle, --trust-code, --input-shape and --classes."""
    options = [
        click.option("--arch", default=None, help=f"Architecture for bare weights: a built-in name ({_BUILTIN_HINT}), torch.nn:Class, or module:factory (needs --trust-code)."),
        click.option("--arch-kwargs", callback=_parse_arch_kwargs, default=None, help="""Keyword arguments for --arch (or the model's .json) as a JSON object, e.g. '{"width": 64}'."""),
        click.option("--trust-pickle", is_flag=True, help="Allow a full pickle checkpoint, or a torch.export program holding pickles or compiled code. Unpickling runs code from the file: only for files you trust."),
        click.option("--trust-code", is_flag=True, help="Allow an architecture from a module outside torch.nn and deepscope, or a HuggingFace config with remote code. Importing runs that module's code: only for code you trust. A module you name in --arch is looked up in the current directory first; one named by the model's .json never is."),
        click.option("--input-shape", callback=_parse_shape, default=None, help="Shape of one example for a built-in --arch, e.g. 1,28,28 (default: the data's)."),
        click.option("--classes", type=click.IntRange(min=1), default=None, help="Output width for a built-in --arch (default: the data's number of classes)."),
    ]  # fmt: skip
    for option in reversed(options):
        function = option(function)
    return function


def load_cli_model(
    model_path: Path,
    *,
    arch: str | None,
    trust_pickle: bool,
    trust_code: bool,
    input_shape: tuple[int, ...] | None,
    classes: int | None,
    dataset: Any,
    arch_kwargs: dict[str, Any] | None = None,
) -> Any:
    """Load the model as ``--model``/``--arch`` say; a built-in ``--arch`` gets the shape and classes it needs.

    ``--arch-kwargs`` and ``--input-shape``/``--classes`` win (the two must agree where both are
    given); otherwise a built-in name takes the data's input shape and number of classes (what a
    model trained on that data has), and a config beside the weights keeps its own. A directory is
    a HuggingFace model (``config.json`` + ``model.safetensors``): :func:`deepscope._hf.load_hf`.
    """
    from deepscope.io import load_model

    if model_path.is_dir():
        from deepscope._hf import check_token_data, load_hf

        if arch is not None or arch_kwargs or input_shape is not None or classes is not None:
            raise DataError(
                f"'{model_path}' is a HuggingFace model directory: its config.json is the architecture, so "
                "--arch, --arch-kwargs, --input-shape and --classes do not apply (edit config.json instead)."
            )
        model = load_hf(model_path, trust_code=trust_code)
        check_token_data(model, dataset)
        return model
    arch_kwargs = dict(arch_kwargs or {})
    for key, value in (("input_shape", None if input_shape is None else list(input_shape)), ("num_classes", classes)):
        if value is None:
            continue
        if key in arch_kwargs and list(_as_list(arch_kwargs[key])) != list(_as_list(value)):
            flag = "--input-shape" if key == "input_shape" else "--classes"
            raise DataError(
                f'{flag} and --arch-kwargs\' "{key}" disagree ({value} against {arch_kwargs[key]}); give one.'
            )
        arch_kwargs[key] = value
    if arch is not None and ":" not in arch and dataset is not None:
        arch_kwargs.setdefault("input_shape", list(dataset.input_shape))
        arch_kwargs.setdefault("num_classes", int(dataset.num_classes or 1))
    return load_model(model_path, arch=arch, trust_pickle=trust_pickle, trust_code=trust_code, arch_kwargs=arch_kwargs)


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _read_json(path: Path, what: str) -> Any:
    from deepscope._files import check_regular_file

    check_regular_file(path, what)
    if path.stat().st_size > 64 * 2**20:
        raise DataError(f"'{path}' is {path.stat().st_size} bytes; a {what.lower()} is a small JSON file.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise DataError(f"'{path}' is not a JSON file written by 'deepscope train' ({error}).") from error


def load_history(path: Path | None) -> tuple[Any, float | None, int | None]:
    """The TrainingHistory, learning rate and data seed from a ``history.json`` written by ``deepscope train``."""
    if path is None:
        return None, None, None
    from deepscope.models import TrainingHistory

    record = _read_json(path, "History file")
    try:
        fields = record["history"]
        names = [name for name in TrainingHistory.__dataclass_fields__ if name != "monitor"]
        history = TrainingHistory(**{name: fields[name] for name in names})
    except (ValueError, KeyError, TypeError) as error:
        raise DataError(f"'{path}' is not a history.json written by 'deepscope train' ({error}).") from error
    learning_rate = record.get("learning_rate")
    seed = record.get("seed")
    return (
        history,
        float(learning_rate) if isinstance(learning_rate, (int, float)) and math.isfinite(learning_rate) else None,
        seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
    )


def recorded_seed(model_path: Path, data: str) -> tuple[int | None, Path | None]:
    """The seed ``deepscope train`` recorded for this model and data, from the ``history.json`` beside it.

    The seed fixes the train/test split; deepscope can know it only when the training run's
    ``history.json`` lies next to the model and names the same ``--data``.
    """
    path = model_path.parent / "history.json"
    try:
        if not path.is_file():
            return None, None
        record = _read_json(path, "History file")
    except DataError:
        return None, None
    if not isinstance(record, dict) or record.get("generator") != "deepscope" or record.get("data") != data:
        return None, None
    seed = record.get("seed")
    return (seed, path) if isinstance(seed, int) and not isinstance(seed, bool) else (None, None)


def check_seed(
    seed: int | None, model_path: Path, data: str, history_path: Path | None, history_seed: int | None
) -> int:
    """The seed to use: the one training used when known; a different explicit ``--seed`` is refused.

    Another seed would put training examples into the test split (the split is seeded).
    """
    known, source = (history_seed, history_path) if history_seed is not None else recorded_seed(model_path, data)
    if seed is not None and known is not None and seed != known:
        raise DataError(
            f"--seed {seed} differs from the seed {known} the model was trained with ({source}); "
            f"the test split would contain training examples. Leave --seed out to use {known}."
        )
    return seed if seed is not None else (known if known is not None else 0)


def strip_cwd_from_path() -> None:
    """Take the current directory off ``sys.path`` (``python -m deepscope`` puts it first).

    deepscope imports some libraries lazily; a ``.py`` file lying in the folder the command was
    started from must never be imported in their place.
    """
    try:
        cwd = os.path.realpath(os.getcwd())
    except OSError:
        cwd = None
    sys.path[:] = [
        entry for entry in sys.path if entry not in ("", ".") and (cwd is None or os.path.realpath(entry) != cwd)
    ]
