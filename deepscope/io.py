"""Safe model loading and saving: safetensors + JSON config, TorchScript, torch.export programs, checkpoints.

A pickle is a program: ``torch.load(weights_only=False)`` on a downloaded file can run any code
(Trail of Bits, "Never a dill moment", 2021). deepscope reads weights with safetensors or
``torch.load(weights_only=True)`` and unpickles a whole module only when the caller opts in with
``trust_pickle=True`` (CLI: ``--trust-pickle``). A ``torch.export`` program (``.pt2``) is checked
entry by entry first (:mod:`deepscope._exported`). See docs/cli.md for the supported files.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pickle
import tempfile
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepscope import _arch
from deepscope._exported import SUFFIX as EXPORT_SUFFIX
from deepscope._exported import load_exported
from deepscope._files import check_regular_file
from deepscope._readers import (
    NESTED_KEYS,
    find_state_dict,
    is_torchscript,
    read_safetensors,
    refusal,
    safetensors_shapes,
)
from deepscope.errors import DataError, DeepscopeError, InvalidParameterError, invalid_parameter

__all__ = ["load_model", "save_model", "CONFIG_FORMAT", "CONFIG_VERSION"]

CONFIG_FORMAT = "deepscope-model"
CONFIG_VERSION = 1
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".ts", ".torchscript", ".jit")
SUFFIXES = (".safetensors", ".json", *CHECKPOINT_SUFFIXES, EXPORT_SUFFIX)
_MAX_CONFIG_BYTES = 1 << 20
_TEMP_PREFIX = ".deepscope-tmp-"
Architecture = str | Callable[..., nn.Module]


def load_model(
    path: str | Path,
    *,
    arch: Architecture | None = None,
    trust_pickle: bool = False,
    map_location: str | torch.device = "cpu",
    arch_kwargs: Mapping[str, Any] | None = None,
    trust_code: bool = False,
) -> nn.Module:
    """Load a model without executing code from the file (unless ``trust_pickle=True``).

    Architecture resolution for weight files: ``arch`` (argument) or the ``"arch"`` of the
    ``<stem>.json`` beside the weights; a plain name such as ``"cnn2d"`` goes to
    :func:`deepscope.models.build`, a callable is called, and a string ``"package.module:factory"``
    is called with ``arch_kwargs`` (the JSON's ``"arch_kwargs"`` updated by the argument).

    No code is imported without your consent: ``"module:factory"`` resolves without any import when
    it names an ``nn.Module`` class of ``torch.nn`` (``"torch.nn:Linear"``) or of ``deepscope.models``.
    Any other module runs its own code when imported, so it is imported only with
    ``trust_code=True`` (CLI: ``--trust-code``). A module you name in ``arch=`` is then looked up in
    the current directory first (``--arch mynet:Net`` finds ``./mynet.py``); one named by the JSON
    never is (a ``.py`` file shipped next to the weights is never imported), and must be a built-in
    name or an ``nn.Module`` class (a function named there needs your ``arch=``). For a built-in
    name, what the weights determine is read from them (``cnn1d``'s channels, kernel size, head:
    :func:`deepscope._arch.infer_builtin_kwargs`). The architecture is first built on the ``meta`` device and compared with the
    file's tensor shapes, so a config declaring far larger layers than the file holds fails before
    anything is allocated. Only regular files are read (a FIFO or ``/dev/zero`` is refused).

    Args:
        path: the model file (``.safetensors``, its ``.json``, ``.pt``/``.pth``/``.ckpt``/``.bin``,
            a TorchScript archive, a ``torch.export`` program ``.pt2`` with a dynamic batch dimension, or a
            HuggingFace directory with ``config.json`` + ``model.safetensors``: :func:`deepscope._hf.load_hf`).
        arch: how to build the module the weights go into.
        trust_pickle: allow full unpickling of a ``.pt`` that is not weights-only. Unpickling runs
            code chosen by whoever wrote the file: only for files from a trusted source.
        map_location: device for the loaded weights (``"cpu"``, ``"cuda:0"``, a ``torch.device``).
        arch_kwargs: keyword arguments for the factory (override the JSON's).
        trust_code: allow importing the module of a ``"module:factory"`` outside ``torch.nn`` and
            ``deepscope.models``. Importing runs that module's code: only for code you trust.

    Returns:
        The model in eval mode (freshly built, so this touches nobody's module).

    Raises:
        DataError: missing file, directory, unsupported extension, unreadable file, weights that do not
            fit the architecture (names the tensor and both shapes), a state_dict without ``arch``.
        UnsafeFileError: a full pickle without ``trust_pickle=True``; an architecture from a module
            outside the allowlist without ``trust_code=True``.
        InvalidParameterError: an ``arch`` that cannot be imported or called.

    Example:
        >>> import tempfile, os
        >>> from deepscope.models import build
        >>> path = save_model(build("mlp", (4,), 3), os.path.join(tempfile.mkdtemp(), "net"))
        >>> type(load_model(path)).__name__
        'MLP'
    """
    if isinstance(path, (str, os.PathLike)) and Path(path).expanduser().is_dir():
        directory = Path(path).expanduser()
        if (directory / "config.json").is_file() and arch is None and not arch_kwargs:
            from deepscope._hf import load_hf  # a HuggingFace directory: its config.json is the architecture

            return load_hf(directory, trust_code=trust_code is True).to(map_location)
    path = _check_existing(path)
    if not isinstance(trust_pickle, bool):
        raise invalid_parameter("trust_pickle", "load_model", "a bool", trust_pickle)
    if not isinstance(trust_code, bool):
        raise invalid_parameter("trust_code", "load_model", "a bool", trust_code)
    if not isinstance(map_location, (str, torch.device)):
        raise invalid_parameter("map_location", "load_model", "a device string or torch.device", map_location)
    suffix = path.suffix.lower()
    if suffix == ".json":
        _read_config(path)  # fail early on a config that is not ours
        path = path.with_suffix(".safetensors")
        if not path.exists():
            raise DataError(f"'{path.name}' (the weights for config '{path.stem}.json') does not exist.")
        check_regular_file(path, "Model file")
        suffix = ".safetensors"
    if suffix == ".safetensors":
        shapes = safetensors_shapes(path)
        model = _build_and_fill(
            shapes, lambda: read_safetensors(path, map_location), path, arch, arch_kwargs, trust_code
        )
    elif suffix in CHECKPOINT_SUFFIXES:
        model = _load_checkpoint(path, arch, arch_kwargs, trust_pickle, map_location, trust_code)
    elif suffix == EXPORT_SUFFIX:
        _no_arch(path, "torch.export program", arch, arch_kwargs)
        return load_exported(path, trust_pickle=trust_pickle, map_location=map_location)  # its flags set, not .eval()
    else:
        raise DataError(
            f"Cannot load '{path.name}': model files must end in {', '.join(SUFFIXES)} "
            "(safetensors weights, a TorchScript archive, a torch.save checkpoint or a torch.export program)."
        )
    return model.to(map_location).eval()


def save_model(
    model: nn.Module,
    path: str | Path,
    *,
    arch: str | None = None,
    arch_kwargs: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``<stem>.safetensors`` (parameters and buffers) and ``<stem>.json`` (how to rebuild it).

    The JSON is ``{"format": "deepscope-model", "version": 1, "arch": ..., "arch_kwargs": {...}}``.
    Without ``arch``, a model from :func:`deepscope.models.build` records its own
    (``model.deepscope_config``); otherwise ``"arch": null`` and :func:`load_model` needs ``arch=``.
    Tied (shared) tensors are stored once. Both files are written atomically.

    Args:
        model: the module to save (not modified).
        path: ``dir/name.safetensors`` or ``dir/name`` (missing folders are created).
        arch: ``"package.module:factory"`` or a built-in architecture name.
        arch_kwargs: JSON-serialisable keyword arguments for the factory.
        overwrite: replace existing files (default: refuse).

    Returns:
        The path of the ``.safetensors`` file.

    Example:
        >>> import tempfile, os, torch
        >>> save_model(torch.nn.Linear(2, 1), os.path.join(tempfile.mkdtemp(), "lin"), arch="torch.nn:Linear",
        ...            arch_kwargs={"in_features": 2, "out_features": 1}).name
        'lin.safetensors'
    """
    from safetensors.torch import save_model as save_tensors

    if not isinstance(model, nn.Module):
        raise invalid_parameter("model", "save_model", "a torch.nn.Module", model)
    if not isinstance(path, (str, os.PathLike)):
        raise invalid_parameter("path", "save_model", "a file path (str or pathlib.Path)", path)
    path = Path(path).expanduser()
    if path.suffix.lower() not in ("", ".safetensors"):
        raise invalid_parameter("path", "save_model", "a path ending in .safetensors or without extension", str(path))
    weights = path.with_suffix(".safetensors") if path.suffix else path.with_name(path.name + ".safetensors")
    config_path = weights.with_suffix(".json")
    if arch is not None and not isinstance(arch, str):
        raise invalid_parameter("arch", "save_model", "None, 'package.module:factory' or a built-in name", arch)
    recorded = getattr(model, "deepscope_config", None)
    if isinstance(recorded, Mapping) and (arch is None or arch == recorded.get("arch")):
        arch = recorded.get("arch")
        arch_kwargs = {**dict(recorded.get("arch_kwargs") or {}), **dict(arch_kwargs or {})}
    config = {
        "format": CONFIG_FORMAT,
        "version": CONFIG_VERSION,
        "arch": arch,
        "arch_kwargs": dict(arch_kwargs or {}),
    }
    try:
        text = json.dumps(config, indent=2, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise invalid_parameter("arch_kwargs", "save_model", "JSON-serialisable values", arch_kwargs) from error
    existing = [str(p) for p in (weights, config_path) if p.exists()]
    if existing and not overwrite:
        raise InvalidParameterError(f"'{existing[0]}' already exists; pass overwrite=True to replace it.")
    weights.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(weights, lambda tmp: save_tensors(model, tmp, metadata={"format": "pt"}))
    _atomic_write(config_path, lambda tmp: Path(tmp).write_text(text + "\n", encoding="utf-8"))
    return weights


def _check_existing(path: Any) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise invalid_parameter("path", "load_model", "a file path", path)
    path = Path(path).expanduser()
    if path.is_dir():
        raise DataError(f"'{path}' is a directory; give the model file itself (e.g. {path / 'model.safetensors'}).")
    if not path.exists():
        raise DataError(f"Model file '{path}' does not exist.")
    return check_regular_file(path, "Model file")


def _read_config(path: Path) -> dict[str, Any]:
    check_regular_file(path, "Model config")
    if path.stat().st_size > _MAX_CONFIG_BYTES:
        raise DataError(f"'{path.name}' is {path.stat().st_size} bytes; a deepscope model config is a small JSON file.")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"Cannot read model config '{path.name}': {error}") from error
    if not isinstance(config, dict) or config.get("format") != CONFIG_FORMAT:
        raise DataError(f'\'{path.name}\' is not a deepscope model config (expected "format": "{CONFIG_FORMAT}").')
    version = config.get("version")
    if not isinstance(version, int) or version > CONFIG_VERSION:
        raise DataError(
            f"'{path.name}' has config version {version!r}; this deepscope reads version {CONFIG_VERSION} "
            "(upgrade deepscope to read newer files)."
        )
    if config.get("arch") is not None and not isinstance(config["arch"], str):
        raise DataError(f"'{path.name}': \"arch\" must be a string or null.")
    if config.get("arch_kwargs") is not None and not isinstance(config["arch_kwargs"], dict):
        raise DataError(f"'{path.name}': \"arch_kwargs\" must be a JSON object.")
    return config


def _load_checkpoint(
    path: Path,
    arch: Architecture | None,
    arch_kwargs: Mapping[str, Any] | None,
    trust_pickle: bool,
    map_location: str | torch.device,
    trust_code: bool,
) -> nn.Module:
    with path.open("rb") as handle:
        head = handle.read(4)
    if not head.startswith(b"PK\x03\x04") and not head.startswith(b"\x80"):
        # torch.save writes a zip archive (or, before PyTorch 1.6, a pickle of protocol >= 2, which
        # starts with 0x80); anything else is not a checkpoint, not a pickle to refuse
        raise DataError(
            f"'{path.name}' is not a model file: it is neither a torch.save checkpoint nor a TorchScript archive "
            f"(it starts with {head!r})."
        )
    if is_torchscript(path):
        _no_arch(path, "TorchScript archive", arch, arch_kwargs)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                return torch.jit.load(str(path), map_location=map_location)
        except RuntimeError as error:
            raise DataError(f"Cannot load TorchScript archive '{path.name}': {error}") from error
    try:
        loaded = torch.load(path, map_location=map_location, weights_only=not trust_pickle)
    except Exception as error:
        if not trust_pickle and isinstance(error, pickle.UnpicklingError):
            raise refusal(path, error) from error
        if isinstance(error, DeepscopeError):
            raise
        # a trusted pickle runs its own code, which may raise anything: report it as unreadable data
        raise DataError(f"Cannot read '{path.name}' with torch.load ({type(error).__name__}: {error}).") from error
    if isinstance(loaded, nn.Module):
        return loaded
    state = find_state_dict(loaded)
    if state is None:
        raise DataError(
            f"'{path.name}' holds a {type(loaded).__name__} that is neither a module nor a state_dict of tensors "
            f"(looked at the top level and under {', '.join(repr(k) for k in NESTED_KEYS)})."
        )
    if isinstance(state, nn.Module):
        return state
    shapes = {name: tuple(tensor.shape) for name, tensor in state.items()}
    return _build_and_fill(shapes, lambda: state, path, arch, arch_kwargs, trust_code)


def _build_and_fill(
    shapes: dict[str, tuple[int, ...]],
    read_state: Callable[[], dict[str, torch.Tensor]],
    path: Path,
    arch: Architecture | None,
    arch_kwargs: Mapping[str, Any] | None,
    trust_code: bool,
) -> nn.Module:
    """Resolve the architecture, check the file's tensor ``shapes`` against it on the meta device, then load.

    ``read_state`` is called only after the check, so a config that declares far more (or other)
    weights than the file holds fails before anything is allocated.
    """
    config_path = path.with_suffix(".json")
    config = _read_config(config_path) if config_path.is_file() else {}
    kwargs = dict(arch_kwargs or {})
    from_file = arch is None
    if arch is None:
        arch = config.get("arch")
        kwargs = {**(config.get("arch_kwargs") or {}), **kwargs}
    elif arch == config.get("arch"):
        kwargs = {**(config.get("arch_kwargs") or {}), **kwargs}
    if arch is None:
        raise DataError(
            f"'{path.name}' holds weights only, so deepscope needs the architecture: pass "
            "arch='package.module:factory' or a built-in name (CLI: --arch, with --input-shape and --classes "
            f"for a built-in name), or keep the '{path.stem}.json' written by deepscope.io.save_model next to it."
        )
    label = _arch_label(arch)
    if callable(arch):
        factory, allowed = arch, False
    elif isinstance(arch, str) and ":" in arch:
        factory, allowed = _arch.resolve(arch, trust_code=trust_code, named_by=config_path.name if from_file else None)
    elif isinstance(arch, str):
        factory, allowed = arch, True  # a built-in name: deepscope.models.build
        kwargs = _arch.infer_builtin_kwargs(arch, shapes, kwargs)  # what the weights tell (cnn1d's channels...)
    else:
        raise invalid_parameter(
            "arch", "load_model", "None, 'package.module:factory', a built-in name or a callable", arch
        )
    meta = _arch.build_on_meta(factory, kwargs, label, required=allowed)
    if meta is not None:
        prefix = _arch.strip_common_prefix(list(shapes), meta.state_dict())
        stripped = {name[len(prefix) :]: shape for name, shape in shapes.items()}
        _arch.check_fit(meta, stripped, path.name, label, file_bytes=path.stat().st_size)
    state = read_state()
    model = _arch.build(factory, kwargs, label)
    _fill(model, state, path.name, label)
    return model


def _no_arch(path: Path, kind: str, arch: Any, arch_kwargs: Any) -> None:
    if arch is not None or arch_kwargs:
        raise DataError(
            f"'{path.name}' is a {kind}: it carries its own graph, so arch and arch_kwargs (CLI: --arch, "
            "--arch-kwargs, --input-shape, --classes) do not apply; leave them out."
        )


def _arch_label(arch: Architecture) -> str:
    return arch if isinstance(arch, str) else getattr(arch, "__qualname__", repr(arch))


def _fill(model: nn.Module, state: dict[str, torch.Tensor], file_name: str, arch: str) -> None:
    """Copy ``state`` into ``model`` after checking names and shapes, with messages a user can act on."""
    expected = model.state_dict()
    prefix = _arch.strip_common_prefix(list(state), expected)
    state = {name[len(prefix) :]: tensor for name, tensor in state.items()}
    aliases = _arch.check_fit(model, {name: tuple(t.shape) for name, t in state.items()}, file_name, arch)
    for alias, stored in aliases.items():
        state[alias] = state[stored]
    float_dtypes = {t.dtype for t in state.values() if t.is_floating_point()}
    model_dtypes = {t.dtype for t in expected.values() if t.is_floating_point()}
    if len(float_dtypes) == 1 and float_dtypes != model_dtypes:
        model.to(next(iter(float_dtypes)))  # keep the file's precision (e.g. a float64 model)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise DataError(f"Cannot load the weights of '{file_name}' into arch '{arch}': {error}") from error


def _atomic_write(path: Path, write: Callable[[str], Any]) -> None:
    """Write through a temporary file named ``.deepscope-tmp-<name>.*.tmp``, fsync it, rename it over ``path``.

    Stale temporaries of ``path`` left by a killed earlier save (recognisable by that prefix) are
    removed first, so none accumulate.
    """
    for stale in path.parent.glob(f"{_TEMP_PREFIX}{glob.escape(path.name)}.*.tmp"):
        with contextlib.suppress(OSError):
            stale.unlink()
    handle, tmp_name = tempfile.mkstemp(prefix=f"{_TEMP_PREFIX}{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        write(tmp_name)
        os.chmod(tmp_name, 0o644)
        descriptor = os.open(tmp_name, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.replace(tmp_name, path)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
