"""``deepscope explain``: attributions and axiom checks for chosen examples, as a table and files.

Writes ``explain.json`` (strict JSON), one SVG per example and a self-contained ``explain.html``
into ``--out``; files deepscope did not write are never replaced without ``--overwrite``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

import deepscope
from deepscope.cli._app import _CONTEXT, MODEL_HELP, _load_dataset, cli
from deepscope.cli._options import check_seed, load_cli_model, model_options
from deepscope.errors import DataError, DeepscopeError

__all__ = ["explain"]

_SVG_MARKER = "<!-- generator: deepscope -->"


def _method_name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """The full method name for ``--method``: a registered name or alias, any case, hyphens allowed.

    The lookup and its message are the library's (:func:`deepscope.attribution._registry.method_named`).
    """
    from deepscope.attribution._registry import method_named

    try:
        return method_named(value.strip().lower().replace("-", "_"), "deepscope explain", "--method")[0]
    except DeepscopeError as error:
        raise click.BadParameter(f"unknown method '{value}': {error}") from None


def _method_help() -> str:
    """``--method``'s help, its aliases read from the registry."""
    from deepscope.attribution._registry import method_aliases

    return "An attribution method (deepscope.attribution.METHODS) or an alias: " + ", ".join(method_aliases()) + "."


def _index_list(ctx: click.Context, param: click.Parameter, value: str) -> list[tuple[int, int]]:
    """``I``, ``A..B`` (inclusive) or a comma list of both, as ``(first, last)`` ranges (not expanded).

    The ranges are checked against the split's size by :func:`_expand` before any list is built, so
    ``--index 0..1000000000000`` is a one-line error, not a list of 10^12 numbers.
    """
    ranges: list[tuple[int, int]] = []
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
        ranges.append((first, last))
    return ranges


def _expand(ranges: list[tuple[int, int]], size: int, split: str, name: str) -> list[int]:
    """The distinct indices of ``ranges`` in order, after checking each lies in ``0..size-1``."""
    for first, last in ranges:
        if last >= size:
            bad = first if first >= size else last
            raise DataError(
                f"--index {bad} is out of range: the {split} split of {name} has {size} "
                f"examples (indices 0..{size - 1})."
            )
    indices: list[int] = []
    for first, last in ranges:
        indices.extend(range(first, last + 1))  # each range is at most the split's size
    return list(dict.fromkeys(indices))


def _layer(model: Any, name: str | None) -> Any:
    """The submodule ``--layer`` names; by default a HuggingFace model's input embedding (else the method's own)."""
    if name is not None:
        try:
            return model.get_submodule(name)
        except AttributeError:
            raise DataError(
                f"--layer '{name}' is not a submodule of the model; see the model card's layer names."
            ) from None
    inner = getattr(model, "model", None)
    embeddings = getattr(inner, "get_input_embeddings", None)
    return embeddings() if callable(embeddings) else None


def _explain_owned(path: Path) -> bool:
    """Whether ``path`` was written by deepscope (the report writer's markers; SVGs carry a comment)."""
    from deepscope.report import written_by_deepscope

    if path.suffix != ".svg":
        return written_by_deepscope(path)
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


def _top_features(values: Any, feature_names: Sequence[str] | None, count: int = 3, *, tokens: bool = False) -> str:
    """The ``count`` largest |attributions| of one example, named like the figure draws them.

    Images ``(C, H, W)`` are summed over channels (``r3c5`` is row 3, column 5), sequences ``(C, L)``
    likewise (``pos 12``); tabular inputs use the feature names (else ``x7``); per-token values of
    token ids ``(L,)`` or ``(L, hidden)`` are summed per position (``tok 4``).
    """
    array = values.detach().double().cpu()
    if tokens:
        array = array.reshape(array.shape[0], -1).sum(1) if array.dim() > 1 else array
        names = [f"tok {flat}" for flat in range(array.numel())]
    elif array.dim() == 3 and array.shape[0] in (1, 3) and array.shape[1] > 1 and array.shape[2] > 1:
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


@cli.command(context_settings=_CONTEXT)
@click.option(
    "--model",
    "model_path",
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help=MODEL_HELP,
)
@model_options
@click.option(
    "--data",
    required=True,
    help="A built-in dataset name (digits, mnist1d, ...) or a .npz/.csv/.pt/.safetensors file (token data: integer input_ids).",
)
@click.option(
    "--method",
    default="ig",
    show_default=True,
    callback=_method_name,
    help=_method_help(),
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
    default=None,
    help="Seed of the data split; must match training so that the test split holds no training examples "
    "(default: the seed in the history.json beside the model, else 0; another one is refused).",
)
@click.option(
    "--layer",
    default=None,
    help="For a layer method (layer_integrated_gradients, layer_gradient_x_activation): the submodule's name, "
    "e.g. model.bert.embeddings.word_embeddings (default: a HuggingFace model's input embedding).",
)
@click.option("--overwrite", is_flag=True, help="Replace files in --out that deepscope did not write.")
def explain(
    model_path: Path,
    arch: str | None,
    arch_kwargs: dict[str, Any] | None,
    trust_pickle: bool,
    trust_code: bool,
    input_shape: tuple[int, ...] | None,
    classes: int | None,
    data: str,
    method: str,
    indices: list[tuple[int, int]],
    target: int | None,
    out: Path,
    seed: int | None,
    layer: str | None,
    overwrite: bool,
) -> None:
    """Attribute a model's outputs on a few test examples, check the method's axioms, and save the maps."""
    from deepscope.report import OutputUnit

    seed = check_seed(seed, model_path, data, None, None)
    json_path, html_path = out / "explain.json", out / "explain.html"
    _check_explain_out(out, [json_path, html_path], overwrite)
    dataset = _load_dataset(data, seed)
    split = "test" if len(dataset.x_test) > 0 else "train"
    x_all, y_all = dataset.test if split == "test" else dataset.train
    indices = _expand(indices, len(x_all), split, dataset.name)
    svg_paths = [out / f"example-{index}.svg" for index in indices]
    _check_explain_out(out, svg_paths, overwrite)
    if split == "train":
        click.echo(f"note: {dataset.name} has no test split; --index refers to the training split.", err=True)
    model = load_cli_model(model_path, arch=arch, arch_kwargs=arch_kwargs, trust_pickle=trust_pickle,
                           trust_code=trust_code, input_shape=input_shape, classes=classes, dataset=dataset)  # fmt: skip
    with OutputUnit(out, "explain") as unit:  # writable? checked before the attributions are computed
        _explain(
            unit, model, (x_all[indices], y_all[indices]), indices, method=method, target=target, model_path=model_path,
            data=data, dataset=dataset, split=split, seed=seed, out=out, layer=layer,
        )  # fmt: skip


def _explain(
    unit: Any,
    model: Any,
    examples: tuple[Any, Any],
    indices: list[int],
    *,
    method: str,
    target: int | None,
    model_path: Path,
    data: str,
    dataset: Any,
    split: str,
    seed: int,
    out: Path,
    layer: str | None = None,
) -> None:
    """Attribute, check the axioms, write the unit (explain.json, explain.html, the SVGs) and print."""
    import inspect

    import torch

    from deepscope._inputs import call_model, move
    from deepscope.attribution import METHODS, check_axioms
    from deepscope.attribution._registry import REGISTRY
    from deepscope.guard import model_guard
    from deepscope.report import Figure, Table, figure_to_svg, new_figure, render_page
    from deepscope.results import format_value, to_jsonable

    json_path, html_path = out / "explain.json", out / "explain.html"
    svg_paths = [out / f"example-{index}.svg" for index in indices]
    inputs, labels = examples
    function = METHODS[method]
    parameters = inspect.signature(function).parameters
    # integration-based methods choose their step count per example until completeness holds to
    # 1% (as the report section does) instead of a fixed 50 steps that may miss it
    accuracy = {"steps": None, "tol": 0.01} if "tol" in parameters and "steps" in parameters else {}
    options = {**accuracy, "progress": True} if "progress" in parameters else dict(accuracy)
    if "layer" in parameters:
        options["layer"] = _layer(model, layer)
    elif layer is not None:
        raise DataError(f"--layer applies to the layer methods (layer_integrated_gradients, ...), not to {method}.")
    attribution = function(model, inputs, target, **options)
    with model_guard(model), torch.no_grad():  # the predicted class, with Dropout/BatchNorm in eval mode
        outputs = call_model(model, move(inputs, attribution.values.device, attribution.values.dtype))  # ids stay ints
    predicted = (
        outputs.argmax(1) if outputs.dim() == 2 and outputs.shape[1] > 1 else outputs.reshape(len(inputs), -1)[:, 0]
    )
    # the axiom checks compare attributions of different models (linearity: f, g and f + g); with an
    # adaptive step count each gets its own quadrature and the difference shows up as a violation that
    # is not the method's, so they use the fixed options the method registers for checks (as the report does)
    spec = REGISTRY[method]
    check_options = (
        spec.report.axiom_options(256) if spec.report is not None and spec.report.axiom_options else accuracy
    )
    # the axiom checks perturb the inputs continuously (baselines, scaled copies): token ids have none
    tokens = not inputs.is_floating_point()
    axioms = None if tokens else check_axioms(model, inputs, attribution.target, method=method, **check_options)

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
                "top": _top_features(attribution.values[position], dataset.feature_names, tokens=tokens),
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
        "axioms": None if axioms is None else axioms.to_dict(),
    }
    files: dict[str, str] = {json_path.name: json.dumps(to_jsonable(record), indent=2, allow_nan=False) + "\n"}
    for path, svg in zip(svg_paths, svgs, strict=True):
        files[path.name] = f"{_SVG_MARKER}\n{svg}"
    facts = [("Model", model_path.name), ("Data", f"{data} ({split} split, seed {seed})"), ("Method", method)]
    if attribution.note:
        facts.append(("Note", attribution.note))
    tables = [Table(rows, caption="Examples: label, predicted class, explained target, largest attributions")]
    if axioms is not None:
        tables.append(Table(axioms.rows(), columns=["axiom", "claimed", "status", "magnitude", "tolerance", "detail"],
                            caption="Axiom checks on these examples"))  # fmt: skip
    figures = [Figure(svg, f"{split} example {index}") for index, svg in zip(indices, svgs, strict=True)]
    files[html_path.name] = render_page(f"deepscope explain: {model_path.name}", [*tables, *figures], facts=facts)
    unit.commit(files)  # all files of this run appear together, the previous run's SVGs go

    click.echo(
        f"{method} on {len(indices)} {split} example(s) of {dataset.name} ({attribution.model_evaluations} model evaluations)"
    )
    columns = ["index", "label", "predicted", "target", "completeness_error", "top"]
    cells = [[format_value(row[column]) if row[column] is not None else "-" for column in columns] for row in rows]
    widths = [max(len(column), *(len(cell[k]) for cell in cells)) for k, column in enumerate(columns)]
    for line in [columns, *cells]:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
    if axioms is None:
        click.echo("axioms:  not checked (token ids: the checks perturb inputs continuously)")
    else:
        verdicts = [f"{c['axiom']} {c['status']} ({format_value(c['magnitude'])})" for c in axioms.checks]
        click.echo("axioms:  " + "; ".join(verdicts))
    if axioms is not None and axioms.violated_claims:
        click.echo(f"warning: {method} violated axioms it claims: {', '.join(axioms.violated_claims)}", err=True)
    click.echo(f"report:  {html_path.absolute()}")  # not resolve(): the files are links into .deepscope
    click.echo(f"results: {json_path.absolute()}")
    click.echo(f"figures: {len(svg_paths)} SVG file(s) in {out.absolute()}")
