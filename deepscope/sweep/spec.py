"""Sweep specifications: a declarative population of models, validated before anything runs.

A spec names a dataset, a model family, a training recipe with its stop rule, the analyses to run
on every trained model, the seeds, and a search over some of those settings (a grid, or random
draws). It can be a TOML or YAML file or a plain dict; :func:`parse_spec` checks all of it at once
and raises one :class:`SpecError` that lists every mistake with its key path
(``train.lr: expected a finite float > 0, got -0.1``), so nothing is trained from a broken file.

Example (TOML)::

    name = "widths"
    seeds = [0, 1]
    [dataset]
    name = "mnist1d"
    n_samples = 2000
    [model]
    arch = "mlp"
    width = 64
    depth = 2
    [train]
    optimizer = "sgd"
    lr = 0.05
    max_epochs = 200
    stop_loss = 0.01          # Jiang et al. 2020: stop at train cross-entropy 0.01
    [search.grid]
    "model.width" = [16, 64, 256]
    "train.lr" = [0.01, 0.05]
    [[analyses]]
    name = "measures"
    options = { max_samples = 512 }

Every trial is a plain dict (:func:`expand`): the spec's ``dataset``, ``model``, ``train``,
``data`` and ``analyses`` with the searched values substituted, plus ``seed``. Its key is the
first 16 hex digits of the SHA-256 of its canonical JSON (:func:`trial_key`), so the same
settings always have the same key, whichever file or executor produced them.
"""

from __future__ import annotations

import copy
import inspect
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from deepscope.errors import DeepscopeError
from deepscope.sweep._checkers import _bool, _choice, _float, _int, _optional, _string, _text
from deepscope.sweep._expand import canonical_json, expand, trial_key

__all__ = ["SpecError", "parse_spec", "read_spec", "expand", "trial_key", "canonical_json", "SEARCHABLE"]


class SpecError(DeepscopeError):
    """A sweep spec with one or more mistakes; ``problems`` lists ``(key path, message)``."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        listed = "; ".join(f"{path}: {message}" for path, message in problems)
        count = f"{len(problems)} problems" if len(problems) > 1 else "1 problem"
        super().__init__(f"The sweep spec has {count}: {listed}. Nothing was run.")


# Section -> key -> (checker, default). The searchable settings are these keys, as "section.key".
_SCHEMA: dict[str, dict[str, tuple[Callable[[Any], Any], Any]]] = {
    "dataset": {
        "name": (_string, None),
        "n_samples": (_optional(_int(2)), None),
        "test_fraction": (_float(0.0, 1.0, strict=True), 0.5),
        "seed": (_int(0), 0),
    },
    "train": {
        "optimizer": (_choice("sgd", "adam", "adamw"), "sgd"),
        "lr": (_float(0.0, strict=True), 0.01),
        "momentum": (_float(0.0, 1.0), 0.9),
        "weight_decay": (_float(0.0), 0.0),
        "batch_size": (_int(1), 64),
        "max_epochs": (_int(1, 100_000), 100),
        "stop_loss": (_optional(_float(0.0, strict=True)), 0.01),
    },
    "data": {
        "train_size": (_optional(_int(2)), None),
        "label_noise": (_float(0.0, 1.0), 0.0),
    },
}
_MLP_KEYS: dict[str, tuple[Callable[[Any], Any], Any]] = {
    "width": (_int(1), 64),
    "depth": (_int(1, 64), 2),
    "dropout": (_float(0.0, 1.0), 0.0),
    "activation": (_string, "relu"),
    "batch_norm": (_bool, False),
}
SEARCHABLE = tuple(f"{section}.{key}" for section, keys in _SCHEMA.items() for key in keys) + tuple(
    f"model.{key}" for key in _MLP_KEYS
)
_TOP_KEYS = (
    "name", "description", "kind", "seeds", "dataset", "model", "train", "data", "params", "search", "analyses", "execution",
)  # fmt: skip


def read_spec(path: str | Path) -> dict[str, Any]:
    """Read a TOML (``.toml``) or YAML (``.yaml``/``.yml``, needs PyYAML) spec file into a validated spec."""
    path = Path(path)
    if not path.exists():
        raise DeepscopeError(f"No sweep spec at {str(path)!r} (expected a .toml or .yaml file, or builtin:NAME).")
    if not path.is_file():
        raise DeepscopeError(f"The sweep spec {str(path)!r} is not a regular file (expected a .toml or .yaml file).")
    text = path.read_text(encoding="utf-8", errors="replace")
    suffix = path.suffix.lower()
    if suffix == ".toml":
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib  # type: ignore[no-redef]
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise DeepscopeError(f"The sweep spec {path.name} is not valid TOML: {error}.") from error
    elif suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ModuleNotFoundError as error:
            raise DeepscopeError(
                "Reading a YAML spec needs PyYAML: pip install pyyaml (or write the spec as TOML)."
            ) from error
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise DeepscopeError(f"The sweep spec {path.name} is not valid YAML: {error}.") from error
    else:
        raise DeepscopeError(f"The sweep spec must be a .toml, .yaml or .yml file. Got {path.name!r}.")
    return parse_spec(raw)


def parse_spec(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a spec (a mapping as read from TOML/YAML) and return it normalised, defaults filled in.

    Raises:
        SpecError: listing every problem with its key path.
    """
    problems: list[tuple[str, str]] = []
    if not isinstance(raw, Mapping):
        raise SpecError([("(top)", f"expected a table of settings, got {type(raw).__name__}")])
    for key in raw:
        if key not in _TOP_KEYS:
            problems.append((str(key), "unknown key (expected one of " + ", ".join(_TOP_KEYS) + ")"))
    spec: dict[str, Any] = {"name": "sweep", "description": ""}
    if "name" in raw:
        spec["name"] = _run_check(_string, raw["name"], "name", problems, "sweep")
    if "description" in raw:
        spec["description"] = _run_check(_text, raw["description"], "description", problems, "")
    kind = _run_check(_kind, raw.get("kind", "train"), "kind", problems, "train")
    if kind != "train":  # a "train" spec does not name its kind, so its stored form never changes
        spec["kind"] = kind
        spec["params"] = _section(raw.get("params", {}), "params", _kind_params(kind), problems)
    elif "params" in raw:
        problems.append(("params", "only a trial kind other than 'train' takes params"))
    spec["seeds"] = _run_check(_seed_list, raw.get("seeds", [0]), "seeds", problems, [0])
    for section, schema in _SCHEMA.items():
        spec[section] = _section(raw.get(section, {}), section, schema, problems)
    if spec["dataset"].get("name") is None and "dataset" not in [p for p, _ in problems]:
        problems.append(("dataset.name", "missing (a built-in dataset name such as 'mnist1d' or a data file path)"))
    spec["model"] = _model_section(raw.get("model", {}), problems)
    spec["search"] = _search_section(raw.get("search", {}), spec, problems)
    spec["analyses"] = _analyses_section(raw.get("analyses", []), problems)
    spec["execution"] = _section(raw.get("execution", {}), "execution", {"threads": (_int(1, 256), 1)}, problems)
    if spec["train"].get("stop_loss") is None and spec["train"].get("max_epochs") is None:
        problems.append(("train", "no stop rule: give max_epochs"))
    if problems:
        raise SpecError(problems)
    return spec


def _kind(value: Any) -> str:
    from deepscope.sweep.kinds import KINDS

    if value not in KINDS:
        raise ValueError("one of " + ", ".join(repr(k) for k in KINDS))
    return value


def _kind_params(kind: str) -> dict[str, tuple[Callable[[Any], Any], Any]]:
    from deepscope.sweep.kinds import kind_module

    return kind_module(kind).PARAMS


def _run_check(checker: Callable[[Any], Any], value: Any, path: str, problems: list, fallback: Any = None) -> Any:
    try:
        return checker(value)
    except ValueError as error:
        problems.append((path, f"expected {error}, got {value!r}"))
        return fallback


def _seed_list(value: Any) -> list[int]:
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError("a non-empty list of ints >= 0")
    seeds = [_int(0)(v) for v in value]
    if len(set(seeds)) != len(seeds):
        raise ValueError("a list of distinct seeds")
    return seeds


def _section(raw: Any, name: str, schema: Mapping[str, tuple[Callable, Any]], problems: list) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        problems.append((name, f"expected a table, got {type(raw).__name__}"))
        return {key: default for key, (_, default) in schema.items()}
    out = {}
    for key in raw:
        if key not in schema:
            problems.append((f"{name}.{key}", "unknown key (expected one of " + ", ".join(schema) + ")"))
    for key, (checker, default) in schema.items():
        out[key] = _run_check(checker, raw[key], f"{name}.{key}", problems, default) if key in raw else default
    return out


def _model_section(raw: Any, problems: list) -> dict[str, Any]:
    from deepscope.models import ARCHITECTURES

    if not isinstance(raw, Mapping):
        problems.append(("model", f"expected a table, got {type(raw).__name__}"))
        return {"arch": "mlp"}
    arch = raw.get("arch", "mlp")
    if arch not in ARCHITECTURES:
        problems.append(("model.arch", "expected one of " + ", ".join(map(repr, ARCHITECTURES)) + f", got {arch!r}"))
        return {"arch": arch}
    if arch == "mlp":
        section = _section({k: v for k, v in raw.items() if k != "arch"}, "model", _MLP_KEYS, problems)
        return {"arch": "mlp", **section}
    accepted = [
        p
        for p in inspect.signature(ARCHITECTURES[arch].__init__).parameters
        if p not in ("self", "input_shape", "num_classes")
    ]
    out = {"arch": arch}
    for key, value in raw.items():
        if key == "arch":
            continue
        if key not in accepted:
            problems.append((f"model.{key}", f"unknown option of {arch!r} (expected one of {', '.join(accepted)})"))
        out[key] = list(value) if isinstance(value, tuple) else value
    return out


def _arch_options(arch: str) -> list[str]:
    """The options of a reference architecture other than its input shape and class count."""
    from deepscope.models import ARCHITECTURES

    if arch not in ARCHITECTURES:
        return []
    parameters = inspect.signature(ARCHITECTURES[arch].__init__).parameters
    return [p for p in parameters if p not in ("self", "input_shape", "num_classes")]


def _any_value(value: Any) -> Any:
    """Options of non-MLP architectures are checked by the architecture itself when the trial builds it."""
    if value is None or isinstance(value, (bool, int, float, str)) or isinstance(value, (list, tuple)):
        return list(value) if isinstance(value, tuple) else value
    raise ValueError("a number, string, boolean or list")


def _distribution(value: Any) -> Any:
    """A random-search distribution: a list (uniform choice) or {uniform|loguniform|int_uniform: [lo, hi]}."""
    if isinstance(value, Mapping):
        if len(value) != 1 or next(iter(value)) not in ("uniform", "loguniform", "int_uniform"):
            raise ValueError(
                "a list of values or one of {uniform = [lo, hi]}, {loguniform = [lo, hi]}, {int_uniform = [lo, hi]}"
            )
        kind, bounds = next(iter(value.items()))
        if (
            not isinstance(bounds, (list, tuple))
            or len(bounds) != 2
            or not all(isinstance(b, (int, float)) for b in bounds)
        ):
            raise ValueError(f"{kind} = [low, high] with two numbers")
        low, high = bounds
        if not low < high or (kind == "loguniform" and low <= 0):
            raise ValueError(f"{kind} bounds with low < high" + (" and low > 0" if kind == "loguniform" else ""))
        return {kind: [low, high]}
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError("a non-empty list of values")
    return list(value)


def _search_section(raw: Any, spec: dict[str, Any], problems: list) -> dict[str, Any]:
    search = _section(
        {k: v for k, v in raw.items() if k != "grid"} if isinstance(raw, Mapping) else raw,
        "search",
        {"kind": (_choice("grid", "random"), "grid"), "samples": (_int(1), 10), "seed": (_int(0), 0)},
        problems,
    )
    grid_raw = raw.get("grid", {}) if isinstance(raw, Mapping) else {}
    grid: dict[str, Any] = {}
    if not isinstance(grid_raw, Mapping):
        problems.append(("search.grid", f"expected a table of 'section.key' = [values], got {type(grid_raw).__name__}"))
        grid_raw = {}
    for path, values in grid_raw.items():
        where = f"search.grid.{path}"
        if path not in _searchable(spec):
            problems.append((where, "not a searchable setting (expected one of " + ", ".join(_searchable(spec)) + ")"))
            continue
        values = _run_check(_distribution, values, where, problems)
        if values is None:
            continue
        if isinstance(values, dict) and search["kind"] == "grid":
            problems.append((where, "a distribution needs search.kind = 'random' (a grid takes a list of values)"))
            continue
        if isinstance(values, list):
            checker = _checker_for(path, spec)
            values = [_run_check(checker, v, f"{where}[{i}]", problems, v) for i, v in enumerate(values)]
            if search["kind"] == "grid" and len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
                problems.append((where, "repeated values (each grid point must be distinct)"))
        grid[path] = values
    search["grid"] = grid
    return search


def _searchable(spec: dict[str, Any]) -> list[str]:
    arch = spec.get("model", {}).get("arch", "mlp")
    fixed = [p for p in SEARCHABLE if not p.startswith("model.")]
    if arch != "mlp":  # another architecture's options, by its constructor's signature
        fixed += [f"model.{key}" for key in _arch_options(arch)]
    params = [f"params.{key}" for key in _kind_params(spec["kind"])] if "kind" in spec else []
    return fixed + ([p for p in SEARCHABLE if p.startswith("model.")] if arch == "mlp" else []) + params


def _checker_for(path: str, spec: dict[str, Any]) -> Callable[[Any], Any]:
    section, key = path.split(".", 1)
    if section == "params":
        return _kind_params(spec["kind"])[key][0]
    if section == "model":
        return _MLP_KEYS[key][0] if spec["model"].get("arch", "mlp") == "mlp" else _any_value
    return _SCHEMA[section][key][0]


def _analyses_section(raw: Any, problems: list) -> list[dict[str, Any]]:
    from deepscope.sweep.analyses import check_analysis

    if not isinstance(raw, (list, tuple)):
        problems.append(
            ("analyses", f"expected a list of {{name = ..., options = {{...}}}} tables, got {type(raw).__name__}")
        )
        return []
    out = []
    names = set()
    for index, entry in enumerate(raw):
        where = f"analyses[{index}]"
        if isinstance(entry, str):
            entry = {"name": entry}
        if not isinstance(entry, Mapping):
            problems.append((where, f"expected a table with a name, got {entry!r}"))
            continue
        unknown = [k for k in entry if k not in ("name", "options", "inputs")]
        for key in unknown:
            problems.append((f"{where}.{key}", "unknown key (expected name, options, inputs)"))
        name = entry.get("name")
        options = entry.get("options", {})
        if not isinstance(options, Mapping):
            problems.append((f"{where}.options", f"expected a table, got {type(options).__name__}"))
            options = {}
        inputs = _run_check(_int(1), entry.get("inputs", 256), f"{where}.inputs", problems, 256)
        for path, message in check_analysis(name, dict(options)):
            problems.append((f"{where}{path}", message))
        if name in names:
            problems.append((f"{where}.name", f"{name!r} is listed twice"))
        names.add(name)
        out.append({"name": name, "options": copy.deepcopy(dict(options)), "inputs": inputs})
    return out
