"""Resolve a model architecture named by a string without importing code nobody vouched for.

A model config is data: ``"arch": "module:Factory"`` in a downloaded ``model.json`` must not make
deepscope import ``module`` (importing runs the module's top-level code: a stdlib module with an
import side effect, or a ``module.py`` shipped next to the weights). So an architecture string
resolves only from an allowlist that needs no import:

* a built-in name (``"mlp"``, ``"cnn2d"``, ... see :data:`deepscope.models.ARCHITECTURES`);
* ``"torch.nn:Linear"`` or ``"torch.nn.modules.conv:Conv2d"``: an ``nn.Module`` class of a
  ``torch.nn`` module that torch has already imported;
* ``"deepscope.models...:Class"``: an ``nn.Module`` class of deepscope's own architectures.

Any other module is imported only with ``trust_code=True`` (CLI: ``--trust-code``). Where that
module is looked up depends on who named it:

* named by you (``arch=`` / ``--arch``) with ``trust_code=True``: on ``sys.path`` with the current
  directory first, so ``--arch mynet:build --trust-code`` finds ``./mynet.py`` without
  ``PYTHONPATH=.`` (you typed the name and vouched for the code);
* named by a file (``"arch"`` in a model's ``.json``): never in the current directory (``''``,
  ``'.'`` and the working directory are taken off ``sys.path`` during the import), so a ``.py``
  file shipped next to downloaded weights cannot be injected through their config.

Sizes are checked before anything is allocated: :func:`build_on_meta` builds the architecture on
PyTorch's ``meta`` device (shapes without storage), so a config declaring a 512 GB layer next to a
40 KB weights file fails in :func:`check_fit` with a clear error instead of allocating.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import nn

from deepscope.errors import DataError, DeepscopeError, UnsafeFileError, invalid_parameter

__all__ = [
    "resolve",
    "build",
    "build_on_meta",
    "check_fit",
    "cwd_first_on_path",
    "infer_builtin_kwargs",
    "without_cwd_on_path",
    "ALLOWED_PREFIXES",
]

ALLOWED_PREFIXES = ("torch.nn", "deepscope.models")
_MODULE_NAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_OWNER = "load_model"


def _allowed(module_name: str) -> bool:
    return any(module_name == prefix or module_name.startswith(prefix + ".") for prefix in ALLOWED_PREFIXES)


@contextlib.contextmanager
def without_cwd_on_path() -> Iterator[None]:
    """Take ``''``, ``'.'`` and the current directory off ``sys.path`` for the duration of the block."""
    try:
        cwd = os.path.realpath(os.getcwd())
    except OSError:  # the working directory was deleted: only the relative entries can point at it
        cwd = None
    saved = list(sys.path)

    def is_cwd(entry: str) -> bool:
        if entry in ("", "."):
            return True
        try:
            return cwd is not None and os.path.realpath(entry) == cwd
        except (OSError, ValueError):
            return False

    sys.path[:] = [entry for entry in saved if not is_cwd(entry)]
    try:
        yield
    finally:
        sys.path[:] = saved


@contextlib.contextmanager
def cwd_first_on_path() -> Iterator[None]:
    """Put the current directory first on ``sys.path`` for the duration of the block (then restore it)."""
    saved = list(sys.path)
    try:
        sys.path.insert(0, os.getcwd())
    except OSError:  # the working directory was deleted: nothing to add
        pass
    try:
        yield
    finally:
        sys.path[:] = saved


def resolve(arch: str, *, trust_code: bool, named_by: str | None) -> tuple[Callable[..., nn.Module], bool]:
    """The factory that ``"module:attribute"`` names, and whether it came from the allowlist.

    Args:
        arch: ``"package.module:factory"`` (``attribute`` may be dotted).
        trust_code: allow importing a module outside the allowlist.
        named_by: the config file that named ``arch`` (None when the caller passed it: then, with
            ``trust_code``, the current directory is searched first).

    Raises:
        UnsafeFileError: a module outside the allowlist without ``trust_code``, or a non-class factory
            named by a file.
        InvalidParameterError: a malformed name, a module that cannot be imported, a missing attribute.
    """
    module_name, _, attribute = arch.partition(":")
    if not _MODULE_NAME.match(module_name) or not all(_MODULE_NAME.match(part) for part in attribute.split(".")):
        raise invalid_parameter("arch", _OWNER, "'package.module:factory' (dotted Python names)", arch)
    allowed = _allowed(module_name)
    if allowed and module_name.startswith("torch.nn"):
        module = sys.modules.get(module_name)  # torch imported every torch.nn module it has; import nothing
        if module is None:
            raise invalid_parameter("arch", _OWNER, "an nn.Module class of an existing torch.nn module", arch)
    elif allowed:
        module = _import(module_name, arch)  # deepscope's own package
    elif not trust_code:
        where = f"'{named_by}' names the architecture" if named_by else "The 'arch' parameter of load_model names"
        raise UnsafeFileError(
            f"{where} '{arch}' from module '{module_name}', which is neither a deepscope "
            "architecture nor part of torch.nn; importing it would run its code, so deepscope did not import it. "
            "If you trust that module, pass trust_code=True (CLI: --trust-code)."
        )
    else:
        with without_cwd_on_path() if named_by else cwd_first_on_path():  # see the module docstring
            module = _import(module_name, arch)
    factory: Any = module
    for part in attribute.split("."):
        factory = getattr(factory, part, None)
        if factory is None:
            raise invalid_parameter("arch", _OWNER, f"a factory that exists in module '{module_name}'", arch)
    is_class = isinstance(factory, type) and issubclass(factory, nn.Module)
    if allowed and not is_class:
        raise invalid_parameter("arch", _OWNER, f"an nn.Module class of {module_name}", arch)
    if not callable(factory):
        raise invalid_parameter("arch", _OWNER, "a callable factory (a class or function)", arch)
    if named_by is not None and not is_class:
        raise UnsafeFileError(
            f"'{named_by}' names the factory '{arch}', which is not an nn.Module class; deepscope calls only "
            "module classes named in a file, since calling anything else with the file's arguments could run "
            f"commands. If you trust it, pass arch='{arch}' (CLI: --arch {arch})."
        )
    return factory, allowed


def _import(module_name: str, arch: str) -> Any:
    importlib.invalidate_caches()  # a module written since the interpreter started is found too
    try:
        return importlib.import_module(module_name)
    except ImportError as error:
        raise invalid_parameter("arch", _OWNER, "'package.module:factory' naming an importable module", arch) from error
    except Exception as error:  # trusted code that fails while it is imported: the user's to fix, not ours
        raise DataError(
            f"Importing module '{module_name}' for arch '{arch}' failed: {type(error).__name__}: {error}"
        ) from error


def infer_builtin_kwargs(name: str, shapes: Mapping[str, tuple[int, ...]], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``kwargs`` completed with the options of built-in arch ``name`` that the weights' ``shapes`` determine.

    For ``"cnn1d"`` (:class:`deepscope.models.CNN1d`, an ``nn.Sequential``): the convolution
    ``channels`` and ``kernel_size`` (from the 3-D weights), ``batch_norm`` (running statistics
    present), ``hidden`` (two linear layers), ``num_classes`` (the last linear layer) and the
    input channels; with the input length known, ``pooling="flatten"`` when the head's width is
    channels × remaining length. The activation and a global max/mean pooling leave no trace in the
    weights: they keep their defaults unless given (a global pooling must be named, the head's
    width alone cannot tell max from mean). Values given in ``kwargs`` always win; a file the
    inference does not fit is reported by :func:`check_fit` as usual.
    """
    found = dict(kwargs)
    if name != "cnn1d":
        return found
    names = list(shapes)
    first = names[0].split(".", 1)[0] + "." if names else ""
    if first and not first[:-1].isdigit() and all(n.startswith(first) for n in names):
        shapes = {n[len(first) :]: shape for n, shape in shapes.items()}  # "model.0.weight" -> "0.weight"
    layers: dict[int, dict[str, tuple[int, ...]]] = {}
    for key, shape in shapes.items():
        index, _, tensor = key.partition(".")
        if index.isdigit():
            layers.setdefault(int(index), {})[tensor] = tuple(shape)
    ordered = [layers[i] for i in sorted(layers)]
    convs = [layer["weight"] for layer in ordered if len(layer.get("weight", ())) == 3]
    linears = [layer["weight"] for layer in ordered if len(layer.get("weight", ())) == 2]
    if not convs or not linears or len(linears) > 2:
        return found  # not a CNN1d's weights: check_fit will say what does not fit
    found.setdefault("channels", [int(w[0]) for w in convs])
    found.setdefault("kernel_size", int(convs[0][2]))
    found.setdefault("batch_norm", any("running_mean" in layer for layer in ordered))
    found.setdefault("hidden", int(linears[0][0]) if len(linears) == 2 else 0)
    found.setdefault("num_classes", int(linears[-1][0]))
    shape = found.get("input_shape")
    if shape is not None and len(shape) == 2 and "pooling" not in found:
        length = int(shape[1])
        for _ in found["channels"]:
            length = length // 2 if length >= 2 else length
        width, last = int(linears[0][1]), int(found["channels"][-1])
        if width == last * length:
            found["pooling"] = "flatten"
        elif width == last:
            raise DataError(
                f"These cnn1d weights pool over positions (the head takes {width} features, one per channel), and "
                "weights cannot tell max from mean pooling: pass arch_kwargs={'pooling': 'max'} or 'mean' "
                """(CLI: --arch-kwargs '{"pooling": "max"}')."""
            )
    return found


def build(factory: Callable[..., nn.Module] | str, kwargs: Mapping[str, Any], label: str) -> nn.Module:
    """Call ``factory(**kwargs)`` (a built-in name goes to :func:`deepscope.models.build`) and check the result."""
    kwargs = dict(kwargs)
    if isinstance(factory, str):
        from deepscope.models import build as build_builtin

        missing = [k for k in ("input_shape", "num_classes") if k not in kwargs]
        if missing:
            raise invalid_parameter(
                "arch_kwargs",
                _OWNER,
                f"the {' and '.join(missing)} that built-in arch '{factory}' needs "
                "(CLI: --input-shape, e.g. 1,28,28, and --classes, e.g. 10)",
                kwargs,
            )
        rest = {k: v for k, v in kwargs.items() if k not in ("input_shape", "num_classes")}
        try:
            return build_builtin(factory, tuple(kwargs["input_shape"]), int(kwargs["num_classes"]), **rest)
        except (TypeError, ValueError) as error:
            if isinstance(error, DeepscopeError):
                raise
            raise invalid_parameter("arch_kwargs", _OWNER, f"arguments that '{factory}' accepts", kwargs) from error
    try:
        model = factory(**kwargs)
    except TypeError as error:
        raise invalid_parameter(
            "arch_kwargs", _OWNER, f"keyword arguments that {label} accepts ({error})", kwargs
        ) from error
    if not isinstance(model, nn.Module):
        raise invalid_parameter("arch", _OWNER, "a factory returning a torch.nn.Module", model)
    return model


def build_on_meta(
    factory: Callable[..., nn.Module] | str, kwargs: Mapping[str, Any], label: str, *, required: bool
) -> nn.Module | None:
    """Build the architecture on the ``meta`` device: every shape, no storage.

    Args:
        required: the architecture is from the allowlist, so building on meta must work; an
            error is the caller's (bad kwargs). For trusted code that cannot build on meta (it
            computes with its tensors while building), None is returned and the check is skipped.
    """
    try:
        with torch.device("meta"):
            return build(factory, kwargs, label)
    except DeepscopeError:
        raise
    except Exception as error:  # noqa: BLE001 - trusted code may not support the meta device
        if required:
            raise invalid_parameter(
                "arch_kwargs", _OWNER, f"arguments that {label} accepts ({error})", dict(kwargs)
            ) from error
        return None


def _size(count: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if count < 1024 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TB"  # pragma: no cover


def aliases(model: nn.Module) -> list[list[str]]:
    """Groups of state_dict names that are one tensor (tied weights), by identity of the tensor object."""
    groups: dict[int, list[str]] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        groups.setdefault(id(tensor), []).append(name)
    return list(groups.values())


def check_fit(
    model: nn.Module, shapes: dict[str, tuple[int, ...]], file_name: str, arch: str, file_bytes: int | None = None
) -> dict[str, str]:
    """Check that tensors with ``shapes`` fill ``model`` (names and shapes); return alias -> stored name.

    ``model`` may live on the meta device. ``shapes`` have the wrapper prefix already removed.
    ``file_bytes`` (the size of the weights file) adds a first, plain check of the declared size.

    Raises:
        DataError: the declared size exceeds what the file can hold, a shape differs (names the
            tensor and both shapes), or names are missing or unexpected.
    """
    expected = model.state_dict(keep_vars=True)
    if file_bytes is not None:
        unique = {id(t): t for t in expected.values()}.values()
        declared = sum(t.numel() * t.element_size() for t in unique)
        if declared > 4 * file_bytes + 2**20:  # 4x: a float64 model may read a float16 file
            raise DataError(
                f"The model built by arch '{arch}' declares {_size(declared)} of weights, but '{file_name}' holds only "
                f"{_size(file_bytes)}; the architecture or its arch_kwargs do not match the file (nothing was allocated)."
            )
    for name, wanted in expected.items():  # in the model's order, so the first mismatch is reported
        if name in shapes and tuple(shapes[name]) != tuple(wanted.shape):
            raise DataError(
                f"Weight '{name}' in '{file_name}' has shape {tuple(shapes[name])} but the model built by arch "
                f"'{arch}' expects {tuple(wanted.shape)}; the architecture or its arch_kwargs do not match."
            )
    filled: dict[str, str] = {}
    for names in aliases(model):  # tied tensors are stored once (safetensors): fill the aliases
        present = [n for n in names if n in shapes]
        for name in names:
            if name not in shapes and present:
                filled[name] = present[0]
    missing = [n for n in expected if n not in shapes and n not in filled]
    unexpected = [n for n in shapes if n not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {_few(missing)}")
        if unexpected:
            parts.append(f"unexpected {_few(unexpected)}")
        raise DataError(
            f"The weights in '{file_name}' do not fit the model built by arch '{arch}': {'; '.join(parts)}."
        )
    return filled


def strip_common_prefix(names: list[str], expected: Mapping[str, Any]) -> str:
    """The wrapper prefix (``model.`` from Lightning, ``module.`` from DataParallel) to drop, or ``""``."""
    if set(names) & set(expected) or not names:
        return ""
    first = names[0].split(".", 1)[0] + "."
    if all(k.startswith(first) for k in names) and {k[len(first) :] for k in names} & set(expected):
        return first
    return ""


def _few(names: list[str]) -> str:
    shown = ", ".join(f"'{n}'" for n in names[:5])
    return shown + (f" and {len(names) - 5} more" if len(names) > 5 else "")
