"""The ``deepscope`` command group, its shared helpers, demo/train/audit/section commands and ``main``.

Commands: ``demo``, ``train``, ``audit``, ``explain`` and one command per registered report section
(``deepscope curvature --model m.safetensors --data digits`` runs the model card and that section).

Every user mistake (a DeepscopeError, a bad option, a missing file) prints exactly one line
``error: <message>`` on stderr and exits with status 2; an unexpected internal failure prints
``error: internal error: ...`` and exits with 1 (``--debug`` shows the traceback and warnings).
Progress bars go to stderr; the paths of what was written go to stdout.
"""

from __future__ import annotations

import copy
import functools
import json
import sys
import traceback
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

import deepscope
from deepscope.cli._options import (
    FiniteFloat,
    check_seed,
    load_cli_model,
    load_history,
    model_options,
    strip_cwd_from_path,
)
from deepscope.errors import DeepscopeError

__all__ = ["cli", "main"]

MODEL_HELP = (
    "Model: a .safetensors file (+ .json config), a torch.export program (.pt2), TorchScript, a torch.save "
    "checkpoint, or a HuggingFace model directory (config.json + model.safetensors)."
)
_FILE_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)
_CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@functools.cache
def _import_everything() -> None:
    """Import every deepscope module once, so that every report section is registered."""
    from deepscope.report.html import import_all_modules

    import_all_modules()


def _sections() -> dict[str, Any]:
    """The registered report sections by key, in render order."""
    from deepscope.report.sections import ordered_sections

    _import_everything()
    return {spec.key: spec for spec in ordered_sections()}


class _SectionGroup(click.Group):
    """A group that adds one command per registered report section."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        fixed = super().list_commands(ctx)
        return fixed + [key for key in _sections() if key not in fixed]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        key = name.replace("-", "_")  # `deepscope model-card` works as well as `deepscope model_card`
        if command is None and key in _sections():
            command = _section_command(key)
        return command


@click.group(cls=_SectionGroup, context_settings=_CONTEXT)
@click.version_option(deepscope.__version__, "--version", prog_name="deepscope", message="%(prog)s %(version)s")
@click.option("--debug", is_flag=True, help="Show tracebacks and warnings (may be given anywhere on the line).")
def cli(debug: bool) -> None:
    """deepscope: deep-learning theory, measured on your PyTorch model, in one HTML report.

    Start with `deepscope demo`; audit your own model with
    `deepscope audit --model model.safetensors --arch cnn2d --data digits --out report`.
    """


# ----------------------------------------------------------------------------------- shared helpers
def _load_dataset(data: str, seed: int):
    from deepscope.datasets import load

    return load(data, seed=seed)


def _check_sections(keys: Sequence[str]) -> list[str]:
    known = _sections()
    unknown = [key for key in keys if key not in known]
    if unknown or not keys:
        raise click.BadParameter(
            f"unknown section(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(known)}",
            param_hint="'--sections'",
        )
    return list(keys)


def _print_report(paths: Any) -> None:
    results = json.loads(Path(paths.json).read_text(encoding="utf-8"))
    failed = [f"{key} ({entry['error']})" for key, entry in results["sections"].items() if entry["status"] == "error"]
    click.echo(f"report:  {Path(paths.html).absolute()}")  # not resolve(): the files are links into .deepscope
    click.echo(f"results: {Path(paths.json).absolute()}")
    if failed:
        click.echo(f"warning: {len(failed)} section(s) failed and show their error: " + "; ".join(failed), err=True)


def _run_audit(
    *,
    model_path: Path,
    arch: str | None,
    arch_kwargs: dict[str, Any] | None,
    trust_pickle: bool,
    trust_code: bool,
    input_shape: tuple[int, ...] | None,
    classes: int | None,
    data: str,
    out: Path,
    sections: list[str] | None,
    budget: str,
    overwrite: bool,
    seed: int | None,
    history_path: Path | None,
    init_path: Path | None,
    learning_rate: float | None,
) -> None:
    from deepscope.report import check_overwrite
    from deepscope.report.audit import audit

    history, recorded_rate, history_seed = load_history(history_path)
    seed = check_seed(seed, model_path, data, history_path, history_seed)
    check_overwrite(out, (out / "report.html", out / "results.json"), overwrite)  # before loading anything
    dataset = _load_dataset(data, seed)
    loading = {"arch": arch, "arch_kwargs": arch_kwargs, "trust_pickle": trust_pickle, "trust_code": trust_code,
               "input_shape": input_shape, "classes": classes, "dataset": dataset}  # fmt: skip
    model = load_cli_model(model_path, **loading)
    init_state = None
    if init_path is not None:
        init_state = load_cli_model(init_path, **loading).state_dict()
    paths = audit(
        model,
        dataset,
        out=out,
        sections=sections,
        budget=budget,
        history=history,
        learning_rate=learning_rate if learning_rate is not None else recorded_rate,
        model_name=model_path.name,
        overwrite=overwrite,
        progress=True,
        seed=seed,
        init_state=init_state,
    )
    _print_report(paths)


def _audit_options(default_out: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    existing_file = click.Path(exists=True, dir_okay=False, path_type=Path)
    options = [
        click.option("--model", "model_path", required=True, type=click.Path(exists=True, path_type=Path), help=MODEL_HELP),
        click.option("--data", required=True, help="A built-in dataset name (digits, mnist1d, ...) or a .npz/.csv/.pt/.safetensors file (token data: integer input_ids)."),
        click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=default_out, show_default=True, help="Output directory for report.html and results.json."),
        click.option("--budget", type=click.Choice(["quick", "full"]), default="quick", show_default=True, help="How much compute the analyses may spend."),
        click.option("--overwrite", is_flag=True, help="Replace report files in --out that deepscope did not write."),
        click.option("--seed", type=click.IntRange(min=0), default=None, help="Seed of the data split and the estimates; must match training (default: the seed in --history or in the history.json beside the model, else 0)."),
        click.option("--history", "history_path", type=existing_file, default=None, help="history.json from 'deepscope train' (adds learning curves)."),
        click.option("--init", "init_path", type=existing_file, default=None, help="Weights at initialisation (init.safetensors from 'deepscope train')."),
        click.option("--lr", "learning_rate", type=FiniteFloat(minimum=0), default=None, help="Training learning rate, when known (default: from --history)."),
    ]  # fmt: skip

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options[1:]):
            function = option(function)
        return options[0](model_options(function))  # --model, then how to read it, then the rest

    return decorate


# ----------------------------------------------------------------------------------- commands
@cli.command(context_settings=_CONTEXT)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default="deepscope-demo", show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--budget", type=click.Choice(["quick", "full"]), default="quick", show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace report files in --out that deepscope did not write.")
def demo(out: Path, epochs: int, seed: int, budget: str, overwrite: bool) -> None:
    """Train a small CNN on the 8x8 digits and audit it with every registered section."""
    import torch

    from deepscope.dynamics import Monitor
    from deepscope.models import build, train
    from deepscope.report.audit import audit

    learning_rate = 1e-3
    dataset = _load_dataset("digits", seed)
    torch.manual_seed(seed)
    model = build("cnn2d", dataset.input_shape, dataset.num_classes)
    # the Monitor records sharpness against 2/lr, gradient noise and more for the curvature section
    run = train(model, dataset, epochs=epochs, lr=learning_rate, seed=seed, progress=True, monitor=Monitor(every=20))
    history = run.history
    click.echo(
        f"trained cnn2d on digits for {epochs} epochs: train accuracy {history.train_accuracy[-1]:.3f}, "
        f"test accuracy {history.test_accuracy[-1]:.3f}"
    )
    paths = audit(
        run.model,
        dataset,
        out=out,
        budget=budget,
        history=history,
        learning_rate=learning_rate,
        model_name="cnn2d on digits (demo)",
        overwrite=overwrite,
        progress=True,
        seed=seed,
        init_state=run.init_state,
    )
    _print_report(paths)


@cli.command("train", context_settings=_CONTEXT)
@click.option("--data", required=True, help="A built-in dataset name (digits, mnist1d, ...) or a .npz/.csv/.pt file.")
@click.option("--arch", default=None, help="mlp, cnn2d, cnn1d, resnet or transformer (default: suits the data).")
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--lr", "learning_rate", type=FiniteFloat(minimum=0), default=1e-3, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--optimizer", type=click.Choice(["adam", "sgd"]), default="adam", show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Output directory.")
@click.option("--overwrite", is_flag=True, help="Replace model files in --out that deepscope did not write.")
def train_command(
    data: str,
    arch: str | None,
    epochs: int,
    learning_rate: float,
    batch_size: int,
    optimizer: str,
    seed: int,
    out: Path,
    overwrite: bool,
) -> None:
    """Train a reference architecture; save model.safetensors (+ .json), init.safetensors and history.json."""
    import torch

    from deepscope.io import save_model
    from deepscope.models import ARCHITECTURES, build, default_architecture, train
    from deepscope.report import OutputUnit

    if arch is not None and arch not in ARCHITECTURES:
        raise click.BadParameter(f"'{arch}' is not one of {', '.join(ARCHITECTURES)}", param_hint="'--arch'")
    history_path = out / "history.json"
    targets = [out / name for name in ("model.safetensors", "model.json", "init.safetensors", "init.json")]
    if not overwrite and not _written_by_train(history_path):
        existing = [str(path) for path in [*targets, history_path] if path.exists()]
        if existing:
            raise DeepscopeError(f"'{existing[0]}' already exists; pass --overwrite or choose another --out.")
    # the five files are one unit: a crash or a full disk leaves the previous run's files or the new ones
    with OutputUnit(out, "train") as unit:  # writable? checked before training
        dataset = _load_dataset(data, seed)
        arch = arch or default_architecture(dataset)
        torch.manual_seed(seed)
        model = build(arch, dataset.input_shape, dataset.num_classes or 1)
        run = train(
            model, dataset, epochs=epochs, lr=learning_rate, optimizer=optimizer, batch_size=batch_size, seed=seed,
            progress=True,
        )  # fmt: skip
        initial = copy.deepcopy(run.model)
        initial.load_state_dict(run.init_state)
        record = {
            "generator": "deepscope",
            "deepscope_version": deepscope.__version__,
            "data": data,
            "arch": arch,
            "epochs": epochs,
            "learning_rate": learning_rate,
            "optimizer": optimizer,
            "batch_size": batch_size,
            "seed": seed,
            "history": run.history.to_dict(),
        }
        unit.commit(
            {
                "model.safetensors": lambda path: save_model(run.model, path),  # also writes model.json
                "init.safetensors": lambda path: save_model(initial, path),
                "history.json": json.dumps(record, indent=2, allow_nan=False) + "\n",
            }
        )
    model_path, init_path = out / "model.safetensors", out / "init.safetensors"
    click.echo(f"model:   {model_path.absolute()}")
    click.echo(f"init:    {init_path.absolute()}")
    click.echo(f"history: {history_path.absolute()}")
    click.echo(
        f"next:    deepscope audit --model {model_path} --data {data} --history {history_path} "
        f"--init {init_path} --out {out / 'report'}"
    )  # the seed (hence the same train/test split) comes from history.json


def _written_by_train(path: Path) -> bool:
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("generator") == "deepscope"
    except (OSError, ValueError, AttributeError):
        return False


@cli.command(context_settings=_CONTEXT)
@_audit_options(default_out="deepscope-report")
@click.option("--sections", default=None, help="Comma-separated section keys (default: all registered).")
def audit(sections: str | None, **options: Any) -> None:
    """Audit a saved model on a dataset: write report.html and results.json into --out."""
    selected = _check_sections([key.strip() for key in sections.split(",") if key.strip()]) if sections else None
    _run_audit(sections=selected, **options)


def _section_command(key: str) -> click.Command:
    spec = _sections()[key]

    @_audit_options(default_out=f"deepscope-{key}")
    def run_section(**options: Any) -> None:
        chosen = [name for name in ("model_card", key) if name in _sections()]
        _run_audit(sections=list(dict.fromkeys(chosen)), **options)

    help_text = f"Audit a saved model with the '{spec.title}' section (plus the model card)."
    return click.command(key, help=help_text, context_settings=_CONTEXT)(run_section)


# ----------------------------------------------------------------------------------- entry point
def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _fail(message: str, debug: bool) -> None:
    if debug:
        traceback.print_exc(file=sys.stderr)
    click.echo(f"error: {_one_line(message)}", err=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 internal error, 2 user mistake)."""
    if argv is None:  # a real command line (`deepscope`, `python -m deepscope`): never import from the cwd
        strip_cwd_from_path()
    args = list(sys.argv[1:] if argv is None else argv)
    cut = args.index("--") if "--" in args else len(args)
    debug = "--debug" in args[:cut]
    args = [arg for arg in args[:cut] if arg != "--debug"] + args[cut:]
    if not args:
        click.echo(cli.get_help(click.Context(cli, info_name="deepscope")))
        return 0
    try:
        with warnings.catch_warnings():
            if not debug:
                warnings.simplefilter("ignore")
            result = cli.main(args=args, prog_name="deepscope", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("error: aborted", err=True)
        return 130
    except click.ClickException as error:
        hint = ""
        if isinstance(error, click.UsageError) and error.ctx is not None:
            hint = f" (see '{error.ctx.command_path} --help')"
        _fail(error.format_message() + hint, debug)
        return 2
    except DeepscopeError as error:
        _fail(str(error), debug)
        return 2
    except _FILE_ERRORS as error:
        _fail(f"{error.strerror or error}: {error.filename}" if error.filename else str(error), debug)
        return 2
    except KeyboardInterrupt:
        click.echo("error: interrupted", err=True)
        return 130
    except Exception as error:  # noqa: BLE001 - the one place that turns a bug into a clear message
        if debug:
            traceback.print_exc(file=sys.stderr)
        detail = f"{type(error).__name__}: {error}"
        click.echo(f"error: internal error: {_one_line(detail)} (rerun with --debug to see the traceback)", err=True)
        return 1
    return result if isinstance(result, int) else 0
