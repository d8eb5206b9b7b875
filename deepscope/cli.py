"""The ``deepscope`` command line: thin wrappers that parse, call the library and print.

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
from deepscope.errors import DataError, DeepscopeError

__all__ = ["cli", "main"]

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


def _load_history(path: Path | None) -> tuple[Any, float | None, int | None]:
    """The TrainingHistory, learning rate and data seed from a ``history.json`` written by ``deepscope train``."""
    if path is None:
        return None, None, None
    from deepscope.models import TrainingHistory

    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        fields = record["history"]
        names = [name for name in TrainingHistory.__dataclass_fields__ if name != "monitor"]
        history = TrainingHistory(**{name: fields[name] for name in names})
    except (ValueError, KeyError, TypeError) as error:
        raise DataError(f"'{path}' is not a history.json written by 'deepscope train' ({error}).") from error
    learning_rate = record.get("learning_rate")
    seed = record.get("seed")
    return (
        history,
        float(learning_rate) if isinstance(learning_rate, (int, float)) else None,
        seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
    )


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
    click.echo(f"report:  {Path(paths.html).resolve()}")
    click.echo(f"results: {Path(paths.json).resolve()}")
    if failed:
        click.echo(f"warning: {len(failed)} section(s) failed and show their error: " + "; ".join(failed), err=True)


def _run_audit(
    *,
    model_path: Path,
    arch: str | None,
    trust_pickle: bool,
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
    from deepscope.io import load_model
    from deepscope.report.audit import audit

    history, recorded_rate, recorded_seed = _load_history(history_path)
    if seed is not None and recorded_seed is not None and seed != recorded_seed:
        # The seed fixes the train/test split: another seed would put training examples in the test split.
        raise DataError(
            f"--seed {seed} differs from the seed {recorded_seed} the model was trained with ({history_path}); "
            f"the test split would contain training examples. Leave --seed out to use {recorded_seed}."
        )
    seed = seed if seed is not None else (recorded_seed if recorded_seed is not None else 0)
    dataset = _load_dataset(data, seed)
    model = load_model(model_path, arch=arch, trust_pickle=trust_pickle)
    init_state = None
    if init_path is not None:
        init_state = load_model(init_path, arch=arch, trust_pickle=trust_pickle).state_dict()
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
        click.option("--model", "model_path", required=True, type=existing_file, help="Model file: .safetensors (+ .json config), TorchScript or a torch.save checkpoint."),
        click.option("--arch", default=None, help="Architecture for bare weights: a built-in name (mlp, cnn2d, cnn1d, resnet, transformer) or package.module:factory."),
        click.option("--trust-pickle", is_flag=True, help="Allow a full pickle checkpoint. Unpickling runs code from the file: only for files you trust."),
        click.option("--data", required=True, help="A built-in dataset name (digits, mnist1d, ...) or a .npz/.csv/.pt file."),
        click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=default_out, show_default=True, help="Output directory for report.html and results.json."),
        click.option("--budget", type=click.Choice(["quick", "full"]), default="quick", show_default=True, help="How much compute the analyses may spend."),
        click.option("--overwrite", is_flag=True, help="Replace report files in --out that deepscope did not write."),
        click.option("--seed", type=click.IntRange(min=0), default=None, help="Seed of the data split and the estimates; must match training (default: the seed in --history, else 0)."),
        click.option("--history", "history_path", type=existing_file, default=None, help="history.json from 'deepscope train' (adds learning curves)."),
        click.option("--init", "init_path", type=existing_file, default=None, help="Weights at initialisation (init.safetensors from 'deepscope train')."),
        click.option("--lr", "learning_rate", type=click.FloatRange(min=0, min_open=True), default=None, help="Training learning rate, when known (default: from --history)."),
    ]  # fmt: skip

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            function = option(function)
        return function

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
@click.option("--lr", "learning_rate", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True)
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
    from deepscope.models import build, default_architecture, train

    history_path = out / "history.json"
    targets = [out / name for name in ("model.safetensors", "model.json", "init.safetensors", "init.json")]
    if not overwrite and not _written_by_train(history_path):
        existing = [str(path) for path in [*targets, history_path] if path.exists()]
        if existing:
            raise DeepscopeError(f"'{existing[0]}' already exists; pass --overwrite or choose another --out.")
    dataset = _load_dataset(data, seed)
    arch = arch or default_architecture(dataset)
    torch.manual_seed(seed)
    model = build(arch, dataset.input_shape, dataset.num_classes or 1)
    run = train(
        model, dataset, epochs=epochs, lr=learning_rate, optimizer=optimizer, batch_size=batch_size, seed=seed,
        progress=True,
    )  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    model_path = save_model(run.model, out / "model.safetensors", overwrite=True)  # checked above
    initial = copy.deepcopy(run.model)
    initial.load_state_dict(run.init_state)
    init_path = save_model(initial, out / "init.safetensors", overwrite=True)
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
    history_path.write_text(json.dumps(record, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    click.echo(f"model:   {Path(model_path).resolve()}")
    click.echo(f"init:    {Path(init_path).resolve()}")
    click.echo(f"history: {history_path.resolve()}")
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


# ----------------------------------------------------------------------------------- explain
# Short names for `deepscope explain --method`; the full names are the keys of deepscope.attribution.METHODS.
_METHOD_ALIASES = {
    "ig": "integrated_gradients",
    "eg": "expected_gradients",
    "ixg": "input_x_gradient",
    "sg": "smoothgrad",
    "vg": "vargrad",
    "gshap": "gradient_shap",
    "dl": "deeplift",
    "gradcam": "grad_cam",
    "occ": "occlusion",
    "shap": "shapley",
}
_SVG_MARKER = "<!-- generator: deepscope -->"


def _method_name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """The full method name for ``--method`` (an alias, a METHODS key, hyphens allowed)."""
    from deepscope.attribution import METHODS

    key = value.strip().lower().replace("-", "_")
    name = _METHOD_ALIASES.get(key, key)
    if name not in METHODS:
        aliases = ", ".join(f"{alias}={full}" for alias, full in _METHOD_ALIASES.items())
        raise click.BadParameter(f"unknown method '{value}'; choose from {', '.join(METHODS)} (aliases: {aliases})")
    return name


def _index_list(ctx: click.Context, param: click.Parameter, value: str) -> list[int]:
    """``I``, ``A..B`` (inclusive) or a comma list of both, as a list of distinct indices in order."""
    indices: list[int] = []
    for part in value.split(","):
        part = part.strip()
        low, dots, high = part.partition("..")
        try:
            first, last = (int(low), int(high)) if dots else (int(part), int(part))
        except ValueError:
            raise click.BadParameter(f"'{part}' is not an index I, a range A..B or a comma list of them") from None
        if first < 0:
            raise click.BadParameter(f"'{part}': indices must be >= 0")
        if last < first:
            raise click.BadParameter(f"'{part}' is an empty range (A..B needs A <= B)")
        indices.extend(range(first, last + 1))
    return list(dict.fromkeys(indices))


def _explain_owned(path: Path) -> bool:
    """Whether ``path`` was written by deepscope (the report writer's markers; SVGs carry a comment)."""
    from deepscope.report.html import _written_by_deepscope

    if path.suffix != ".svg":
        return _written_by_deepscope(path)
    try:
        with path.open("r", encoding="utf-8", errors="replace") as handle:
            return _SVG_MARKER in handle.read(4096)
    except OSError:
        return False


def _check_explain_out(out: Path, paths: Sequence[Path], overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise DeepscopeError(f"The output path '{out}' exists and is not a directory; choose another --out.")
    for path in paths:
        if path.is_dir():
            raise DeepscopeError(f"'{path}' is a directory; cannot write there. Choose another --out.")
        if path.exists() and not overwrite and not _explain_owned(path):
            raise DeepscopeError(
                f"'{path}' exists and was not written by deepscope; pass --overwrite to replace it, "
                "or choose another --out."
            )


def _top_features(values: Any, feature_names: Sequence[str] | None, count: int = 3) -> str:
    """The ``count`` largest |attributions| of one example, named like the figure draws them.

    Images ``(C, H, W)`` are summed over channels (``r3c5`` is row 3, column 5), sequences ``(C, L)``
    likewise (``pos 12``); tabular inputs use the feature names (else ``x7``).
    """
    array = values.detach().double().cpu()
    if array.dim() == 3 and array.shape[0] in (1, 3) and array.shape[1] > 1 and array.shape[2] > 1:
        width = array.shape[2]
        array = array.sum(0).reshape(-1)
        names = [f"r{flat // width}c{flat % width}" for flat in range(array.numel())]
    elif array.dim() == 2:
        array = array.sum(0)
        names = [f"pos {flat}" for flat in range(array.numel())]
    else:
        array = array.reshape(-1)
        given = list(feature_names or [])
        names = given if len(given) == array.numel() else [f"x{flat}" for flat in range(array.numel())]
    order = array.abs().argsort(descending=True)[:count].tolist()
    return ", ".join(f"{names[j]} {float(array[j]):+.3g}" for j in order)


def _scalar(value: Any) -> Any:
    value = value.tolist() if hasattr(value, "tolist") else value
    if isinstance(value, list):
        return value[0] if len(value) == 1 else value
    return value


def _explain_html(title: str, facts: list[tuple[str, str]], tables: list[Any], figures: list[Any]) -> str:
    from deepscope.report.html import _CSS, GENERATOR_META, _escape, _render_block

    fact_html = "".join(f"<dt>{_escape(name)}</dt><dd>{_escape(value)}</dd>" for name, value in facts)
    body = "".join(_render_block(block) for block in [*tables, *figures])
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8">{GENERATOR_META}'
        '<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">'
        f"<title>{_escape(title)}</title><style>{_CSS}</style></head>\n<body><main>"
        f'<header class="report"><h1>{_escape(title)}</h1><dl class="facts">{fact_html}</dl></header>'
        f"{body}</main></body></html>\n"
    )


@cli.command(context_settings=_CONTEXT)
@click.option(
    "--model",
    "model_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Model file: .safetensors (+ .json config), TorchScript or a torch.save checkpoint.",
)
@click.option(
    "--arch",
    default=None,
    help="Architecture for bare weights: a built-in name (mlp, cnn2d, cnn1d, resnet, transformer) or package.module:factory.",
)
@click.option(
    "--trust-pickle",
    is_flag=True,
    help="Allow a full pickle checkpoint. Unpickling runs code from the file: only for files you trust.",
)
@click.option("--data", required=True, help="A built-in dataset name (digits, mnist1d, ...) or a .npz/.csv/.pt file.")
@click.option(
    "--method",
    default="ig",
    show_default=True,
    callback=_method_name,
    help="An attribution method (deepscope.attribution.METHODS) or an alias: ig, eg, ixg, sg, vg, gshap, dl, gradcam, occ, shap.",
)
@click.option(
    "--index",
    "indices",
    default="0..7",
    show_default=True,
    callback=_index_list,
    help="Test examples to explain: I, A..B (inclusive) or a comma list (train examples when there is no test split).",
)
@click.option(
    "--target",
    type=click.IntRange(min=0),
    default=None,
    help="Class to explain (default: each example's predicted class).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default="deepscope-explain",
    show_default=True,
    help="Output directory for explain.json, explain.html and one SVG per example.",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Seed of the data split; must match training so that the test split holds no training examples.",
)
@click.option("--overwrite", is_flag=True, help="Replace files in --out that deepscope did not write.")
def explain(
    model_path: Path,
    arch: str | None,
    trust_pickle: bool,
    data: str,
    method: str,
    indices: list[int],
    target: int | None,
    out: Path,
    seed: int,
    overwrite: bool,
) -> None:
    """Attribute a model's outputs on a few test examples, check the method's axioms, and save the maps."""
    import inspect

    import torch

    from deepscope.attribution import METHODS, check_axioms
    from deepscope.guard import model_guard
    from deepscope.io import load_model
    from deepscope.report.html import _atomic_write
    from deepscope.report.sections import Figure, Table
    from deepscope.report.svg import figure_to_svg, new_figure
    from deepscope.results import format_value, to_jsonable

    json_path, html_path = out / "explain.json", out / "explain.html"
    svg_paths = [out / f"example-{index}.svg" for index in indices]
    _check_explain_out(out, [json_path, html_path, *svg_paths], overwrite)
    dataset = _load_dataset(data, seed)
    split = "test" if len(dataset.x_test) > 0 else "train"
    x_all, y_all = dataset.test if split == "test" else dataset.train
    if split == "train":
        click.echo(f"note: {dataset.name} has no test split; --index refers to the training split.", err=True)
    outside = [index for index in indices if index >= len(x_all)]
    if outside:
        raise DataError(
            f"--index {outside[0]} is out of range: the {split} split of {dataset.name} has {len(x_all)} "
            f"examples (indices 0..{len(x_all) - 1})."
        )
    model = load_model(model_path, arch=arch, trust_pickle=trust_pickle)
    inputs, labels = x_all[indices], y_all[indices]
    function = METHODS[method]
    parameters = inspect.signature(function).parameters
    # integration-based methods choose their step count per example until completeness holds to
    # 1% (as the report section does) instead of a fixed 50 steps that may miss it
    accuracy = {"steps": None, "tol": 0.01} if "tol" in parameters and "steps" in parameters else {}
    options = {**accuracy, "progress": True} if "progress" in parameters else dict(accuracy)
    attribution = function(model, inputs, target, **options)
    with model_guard(model), torch.no_grad():  # the predicted class, with Dropout/BatchNorm in eval mode
        outputs = model(inputs.to(attribution.values.device, attribution.values.dtype))
    predicted = (
        outputs.argmax(1) if outputs.dim() == 2 and outputs.shape[1] > 1 else outputs.reshape(len(inputs), -1)[:, 0]
    )
    axioms = check_axioms(model, inputs, attribution.target, method=method, **accuracy)

    errors = attribution.diagnostics.get("completeness_error")
    rows = []
    for position, index in enumerate(indices):
        rows.append(
            {
                "index": index,
                "label": _scalar(labels[position]),
                "predicted": _scalar(predicted[position]),
                "target": int(attribution.target[position]),
                "completeness_error": float(errors[position]) if isinstance(errors, torch.Tensor) else None,
                "top": _top_features(attribution.values[position], dataset.feature_names),
            }
        )
    svgs = []
    for position, index in enumerate(indices):
        figure, ax = new_figure(4.0, 3.0)
        attribution.plot(ax=ax, example=position)
        ax.set_title(f"{method}, {split} example {index}, target {rows[position]['target']}")
        svgs.append(figure_to_svg(figure))

    record = {
        "generator": "deepscope",
        "deepscope_version": deepscope.__version__,
        "command": "explain",
        "model": str(model_path),
        "data": data,
        "split": split,
        "seed": seed,
        "method": method,
        "examples": rows,
        "figures": [path.name for path in svg_paths],
        "attribution": attribution.to_dict(),
        "axioms": axioms.to_dict(),
    }
    out.mkdir(parents=True, exist_ok=True)
    _atomic_write(json_path, json.dumps(to_jsonable(record), indent=2, allow_nan=False) + "\n")
    for path, svg in zip(svg_paths, svgs, strict=True):
        _atomic_write(path, f"{_SVG_MARKER}\n{svg}")
    facts = [("Model", model_path.name), ("Data", f"{data} ({split} split, seed {seed})"), ("Method", method)]
    if attribution.note:
        facts.append(("Note", attribution.note))
    tables = [
        Table(rows, caption="Examples: label, predicted class, explained target, largest attributions"),
        Table(axioms.rows(), columns=["axiom", "claimed", "status", "magnitude", "tolerance", "detail"],
              caption="Axiom checks on these examples"),
    ]  # fmt: skip
    figures = [Figure(svg, f"{split} example {index}") for index, svg in zip(indices, svgs, strict=True)]
    _atomic_write(html_path, _explain_html(f"deepscope explain: {model_path.name}", facts, tables, figures))

    click.echo(
        f"{method} on {len(indices)} {split} example(s) of {dataset.name} ({attribution.model_evaluations} model evaluations)"
    )
    columns = ["index", "label", "predicted", "target", "completeness_error", "top"]
    cells = [[format_value(row[column]) if row[column] is not None else "-" for column in columns] for row in rows]
    widths = [max(len(column), *(len(cell[k]) for cell in cells)) for k, column in enumerate(columns)]
    for line in [columns, *cells]:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
    verdicts = [f"{check['axiom']} {check['status']} ({format_value(check['magnitude'])})" for check in axioms.checks]
    click.echo("axioms:  " + "; ".join(verdicts))
    if axioms.violated_claims:
        click.echo(f"warning: {method} violated axioms it claims: {', '.join(axioms.violated_claims)}", err=True)
    click.echo(f"report:  {html_path.resolve()}")
    click.echo(f"results: {json_path.resolve()}")
    click.echo(f"figures: {len(svg_paths)} SVG file(s) in {out.resolve()}")


# ----------------------------------------------------------------------------------- entry point
def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _fail(message: str, debug: bool) -> None:
    if debug:
        traceback.print_exc(file=sys.stderr)
    click.echo(f"error: {_one_line(message)}", err=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 internal error, 2 user mistake)."""
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
