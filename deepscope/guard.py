"""model_guard: the caller's model leaves every deepscope analysis exactly as it came in.

On exit from the guard — normal or by an exception — the model has bit-identical parameters
and buffers (the same Parameter objects, restored in place only where they changed, so autograd
version counters are not bumped needlessly), the same ``.grad`` tensors, ``requires_grad`` flags,
train/eval flags, submodules and hooks (module, parameter and global hooks added inside the
guard are removed; hooks removed inside it are put back).

Train-mode randomness (Dropout, BatchNorm in training mode) is detected on entry. With
``mode="eval"`` (the default) every module is switched to eval inside the guard and the switch
is reported in :attr:`GuardReport.switched_to_eval`; ``mode="train"`` keeps the caller's flags;
``mode="refuse"`` raises :class:`~deepscope.errors.UnsupportedModelError` instead.

Guards nest: an inner guard on a model already guarded is free (the outer one restores).

Example:
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5))
    >>> with model_guard(net) as report:
    ...     _ = net[0].weight.data.mul_(0)          # vandalism inside the guard
    >>> bool(net[0].weight.abs().sum() > 0), net.training, report.switched_to_eval
    (True, True, ['1'])
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import operator
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import nn
from torch.nn.modules import module as _module_globals

from deepscope._bits import _BitCopies, bitwise_equal
from deepscope._validation import check_choice
from deepscope.errors import UnsupportedModelError, invalid_parameter

__all__ = ["model_guard", "GuardReport", "stochastic_modules", "current_guard_report", "bitwise_equal"]

_MODULE_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
    "_state_dict_pre_hooks",
    "_load_state_dict_pre_hooks",
    "_load_state_dict_post_hooks",
)
_GLOBAL_HOOK_DICTS = (
    "_global_forward_hooks",
    "_global_forward_hooks_always_called",
    "_global_forward_pre_hooks",
    "_global_backward_hooks",
    "_global_backward_pre_hooks",
    "_global_module_registration_hooks",
    "_global_parameter_registration_hooks",
    "_global_buffer_registration_hooks",
)

_active: contextvars.ContextVar[dict[int, GuardReport] | None] = contextvars.ContextVar(
    "deepscope_guards", default=None
)


@dataclasses.dataclass
class GuardReport:
    """What the guard saw and did, for the analysis to put in its result.

    Attributes:
        mode: the semantics the analysis ran under ("eval" or "train").
        switched_to_eval: names of train-mode stochastic modules (Dropout, BatchNorm) that were
            run in eval semantics instead.
    """

    mode: str
    switched_to_eval: list[str]

    @property
    def note(self) -> str:
        """One sentence for results and reports; empty when nothing was switched."""
        if not self.switched_to_eval:
            return ""
        names = ", ".join(self.switched_to_eval[:5]) + (" ..." if len(self.switched_to_eval) > 5 else "")
        return (
            f"The model was in train mode with {len(self.switched_to_eval)} stochastic module(s) ({names}); "
            "the analysis ran in eval semantics and the model's flags were restored afterwards."
        )


def stochastic_modules(model: nn.Module) -> list[str]:
    """Names of modules in training mode whose forward pass is random or updates state."""
    return _stochastic(model.named_modules())


@functools.cache
def _stochastic_class_names() -> frozenset[str]:
    """Class names of torch's Dropout and BatchNorm kinds: what a TorchScript module keeps of its class."""
    names, stack = set(), [nn.modules.dropout._DropoutNd, nn.modules.batchnorm._NormBase]
    while stack:
        kind = stack.pop()
        if kind.__module__.startswith("torch.nn."):
            names.add(kind.__name__)
        stack.extend(kind.__subclasses__())
    return frozenset(names)


def _stochastic(named_modules: Iterable[tuple[str, nn.Module]]) -> list[str]:
    found = []
    for name, module in named_modules:
        stochastic = isinstance(module, nn.modules.dropout._DropoutNd | nn.modules.batchnorm._NormBase) or (
            isinstance(module, torch.jit.RecursiveScriptModule)
            and getattr(module, "original_name", None) in _stochastic_class_names()
        )
        if stochastic and module.training:
            found.append(name or type(module).__name__)
    return found


def current_guard_report(model: nn.Module) -> GuardReport | None:
    """The report of the guard currently active on ``model``, if any."""
    return (_active.get() or {}).get(id(model))


class _Snapshot:
    """Everything about a module tree that the guard promises to restore.

    Taken before and checked after every analysis, so it is written for speed: one pass over the
    modules, hook dictionaries compared by identity with an empty-dict fast path, tensor data and
    grads copied and compared through :class:`_BitCopies`.
    """

    def __init__(self, modules: list[nn.Module]) -> None:
        self.modules = modules
        # per module: its __dict__, training flag, copies of its child/parameter/buffer dicts, the
        # non-persistent buffer names, and its hook dicts (None when it had no hooks at all)
        self.module_state = []
        tensors: dict[int, torch.Tensor] = {}
        for module in modules:
            attributes = vars(module)
            params, buffers = dict(module._parameters), dict(module._buffers)
            self.module_state.append(
                (
                    module,
                    attributes,
                    module.training,
                    dict(module._modules),
                    params,
                    buffers,
                    set(module._non_persistent_buffers_set),
                    _module_hooks(module),
                )
            )
            for tensor in (*params.values(), *buffers.values()):
                if tensor is not None:
                    tensors[id(tensor)] = tensor
        self.tensors = list(tensors.values())
        # per tensor: requires_grad, the grad object, copies of its hook dicts (None: it had none)
        self.tensor_state = [
            (t.requires_grad, t.grad, _copy_or_none(t._backward_hooks), _copy_or_none(_post_hooks(t)))
            for t in self.tensors
        ]
        with torch.no_grad():
            self.data = _BitCopies(self.tensors)
            self.grad_indices = [i for i, t in enumerate(self.tensors) if t.grad is not None]
            self.grad_copies = _BitCopies([self.tensors[i].grad for i in self.grad_indices])
        self.global_hooks = [
            (k, dict(getattr(_module_globals, k))) for k in _GLOBAL_HOOK_DICTS if hasattr(_module_globals, k)
        ]

    def restore(self) -> None:
        for module, attributes, training, children, params, buffers, non_persistent, hooks in self.module_state:
            _restore_dict(module._modules, children)
            _restore_dict(module._parameters, params)
            _restore_dict(module._buffers, buffers)
            if module._non_persistent_buffers_set != non_persistent:
                module._non_persistent_buffers_set.clear()
                module._non_persistent_buffers_set.update(non_persistent)
            if module.training is not training:
                _set_training(module, training)
            if hooks is None:  # the module had no hooks: remove any added since
                _clear_module_hooks(attributes)
            else:
                for key, saved in hooks:
                    _restore_dict(attributes[key], saved)
            if params or buffers or children:
                # attributes that shadow a restored parameter/buffer/submodule would hide it
                for name in attributes.keys() & (params.keys() | buffers.keys() | children.keys()):
                    del attributes[name]
        for key, saved in self.global_hooks:
            _restore_dict(getattr(_module_globals, key), saved)
        with torch.no_grad():
            self._restore_tensors()

    def _restore_tensors(self) -> None:
        tensors = self.tensors
        if not self.data.unchanged(tensors):
            for index, tensor in enumerate(tensors):
                replacement = self.data.restore_into(index, tensor.data)
                if replacement is not None:
                    tensor.data = replacement
        for tensor, (requires_grad, grad, backward_hooks, post_hooks) in zip(tensors, self.tensor_state):
            if tensor.requires_grad != requires_grad and tensor.is_leaf:
                tensor.requires_grad_(requires_grad)
            if tensor.grad is not grad:
                tensor.grad = grad
            current = tensor._backward_hooks
            if backward_hooks is None:
                if current:
                    tensor._backward_hooks = None
            elif current is not None:
                _restore_dict(current, backward_hooks)
            current = _post_hooks(tensor)
            if post_hooks is None:
                if current:
                    tensor._post_accumulate_grad_hooks = None
            elif current is not None:
                _restore_dict(current, post_hooks)
        grads = [tensors[i].grad for i in self.grad_indices]
        if not self.grad_copies.unchanged(grads):
            for position, grad in enumerate(grads):
                replacement = self.grad_copies.restore_into(position, grad)
                if replacement is not None:
                    tensors[self.grad_indices[position]].grad = replacement


def _post_hooks(tensor: torch.Tensor) -> dict[Any, Any] | None:
    return getattr(tensor, "_post_accumulate_grad_hooks", None)


_all_module_hook_dicts = operator.itemgetter(*_MODULE_HOOK_DICTS)


def _module_hooks(module: nn.Module) -> list[tuple[str, dict[Any, Any]]] | None:
    """Copies of a module's hook dictionaries; None (cheap to take and to check) when all are empty."""
    attributes = vars(module)
    try:
        if not any(_all_module_hook_dicts(attributes)):
            return None
    except KeyError:  # a module made by an older torch may lack some of the dictionaries
        pass
    return [(k, dict(attributes[k])) for k in _MODULE_HOOK_DICTS if k in attributes]


def _clear_module_hooks(attributes: dict[str, Any]) -> None:
    try:
        dicts = _all_module_hook_dicts(attributes)
    except KeyError:
        dicts = [attributes[k] for k in _MODULE_HOOK_DICTS if k in attributes]
    if any(dicts):
        for hooks in dicts:
            hooks.clear()


def _module_list(model: nn.Module) -> list[nn.Module]:
    """``model`` and every submodule once (breadth-first; the same set as ``model.modules()``)."""
    modules, seen = [model], {id(model)}
    for module in modules:  # the list grows while it is walked
        for child in module._modules.values():
            if child is not None and id(child) not in seen:
                seen.add(id(child))
                modules.append(child)
    return modules


def _set_training(module: nn.Module, flag: bool) -> None:
    """``module.training = flag``, without nn.Module.__setattr__'s checks when the class keeps the default."""
    if type(module).__setattr__ is nn.Module.__setattr__:
        object.__setattr__(module, "training", flag)
    else:
        module.training = flag


def _copy_or_none(hooks: dict[Any, Any] | None) -> dict[Any, Any] | None:
    return None if hooks is None else dict(hooks)


def _restore_dict(current: Any, saved: dict[Any, Any]) -> None:
    """Make ``current`` hold exactly the saved entries (by identity), in the saved order.

    ``current`` is a dict, except on a TorchScript module, whose ``_modules``/``_parameters``/
    ``_buffers`` are views of the compiled module (``OrderedDictWrapper``): they iterate only
    through ``keys()``, cannot gain or lose entries, and take assignments to existing names.
    """
    if not isinstance(current, dict):
        _restore_script_dict(current, saved)
        return
    if not current and not saved:
        return
    same = list(current) == list(saved) and all(current[k] is saved[k] for k in saved)
    if not same:
        current.clear()
        current.update(saved)


def _restore_script_dict(current: Any, saved: dict[Any, Any]) -> None:
    """Put the saved objects back under their names in a TorchScript module's attribute view."""
    for key, value in saved.items():
        if key in current and current[key] is not value and value is not None:
            current[key] = value  # a scripted submodule, parameter or buffer of the same type


@contextlib.contextmanager
def model_guard(model: nn.Module, *, mode: str = "eval") -> Iterator[GuardReport]:
    """Run the body with ``model`` protected; restore everything about it on exit, also on error.

    Args:
        model: the caller's ``nn.Module``.
        mode: "eval" (default; stochastic train-mode modules run in eval semantics and the
            switch is reported), "train" (keep the caller's flags) or "refuse" (raise if the
            model has train-mode Dropout/BatchNorm).

    Yields:
        A :class:`GuardReport` describing what semantics the body ran under.
    """
    if not isinstance(model, nn.Module):
        raise invalid_parameter("model", "model_guard", "a torch.nn.Module", model)
    check_choice(mode, "mode", "model_guard", ("eval", "train", "refuse"))
    active = _active.get() or {}
    if id(model) in active:
        yield active[id(model)]
        return
    modules = _module_list(model)
    stochastic = _stochastic(model.named_modules()) if any(m.training for m in modules) else []
    if mode == "refuse" and stochastic:
        raise UnsupportedModelError(
            f"The model has train-mode stochastic modules ({', '.join(stochastic)}); call model.eval() "
            "or pass mode='eval' to analyse it in eval semantics."
        )
    snapshot = _Snapshot(modules)
    report = GuardReport(
        mode="train" if mode == "train" else "eval", switched_to_eval=stochastic if mode == "eval" else []
    )
    token = _active.set({**active, id(model): report})
    try:
        if mode == "eval":
            for module in snapshot.modules:
                if module.training:
                    _set_training(module, False)
        yield report
    finally:
        _active.reset(token)
        snapshot.restore()
