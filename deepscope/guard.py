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
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.nn.modules import module as _module_globals

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
_TENSOR_HOOK_ATTRS = ("_backward_hooks", "_post_accumulate_grad_hooks")

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
    found = []
    for name, module in model.named_modules():
        stochastic = isinstance(module, nn.modules.dropout._DropoutNd | nn.modules.batchnorm._NormBase)
        if stochastic and module.training:
            found.append(name or type(module).__name__)
    return found


def current_guard_report(model: nn.Module) -> GuardReport | None:
    """The report of the guard currently active on ``model``, if any."""
    return (_active.get() or {}).get(id(model))


def bitwise_equal(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    """True when two tensors have the same shape, dtype, device and bits (NaN payloads included)."""
    if a is None or b is None:
        return a is None and b is None
    if a.shape != b.shape or a.dtype != b.dtype or a.device != b.device:
        return False
    if a.is_floating_point() or a.is_complex():
        a, b = a.detach().contiguous(), b.detach().contiguous()
        return bool(torch.equal(a.view(torch.uint8), b.view(torch.uint8)))
    return bool(torch.equal(a.detach(), b.detach()))


class _Snapshot:
    """Everything about a module tree that the guard promises to restore."""

    def __init__(self, model: nn.Module) -> None:
        self.modules: list[nn.Module] = list(model.modules())
        self.children = [OrderedDict(m._modules) for m in self.modules]
        self.training = [m.training for m in self.modules]
        self.hooks = [
            {k: OrderedDict(getattr(m, k)) for k in _MODULE_HOOK_DICTS if hasattr(m, k)} for m in self.modules
        ]
        self.params = [OrderedDict(m._parameters) for m in self.modules]
        self.buffers = [OrderedDict(m._buffers) for m in self.modules]
        self.non_persistent = [set(m._non_persistent_buffers_set) for m in self.modules]
        tensors: dict[int, torch.Tensor] = {}
        for store in self.params + self.buffers:
            for tensor in store.values():
                if tensor is not None:
                    tensors[id(tensor)] = tensor
        self.tensors = tensors
        with torch.no_grad():
            self.data = {k: t.detach().clone() for k, t in tensors.items()}
            self.grads = {k: (t.grad, None if t.grad is None else t.grad.detach().clone()) for k, t in tensors.items()}
        self.requires_grad = {k: t.requires_grad for k, t in tensors.items()}
        self.tensor_hooks = {
            k: {a: (None if getattr(t, a, None) is None else OrderedDict(getattr(t, a))) for a in _TENSOR_HOOK_ATTRS}
            for k, t in tensors.items()
        }
        self.global_hooks = {
            k: OrderedDict(getattr(_module_globals, k)) for k in _GLOBAL_HOOK_DICTS if hasattr(_module_globals, k)
        }

    def restore(self) -> None:
        for module, children, training, hooks, params, buffers, non_persistent in zip(
            self.modules, self.children, self.training, self.hooks, self.params, self.buffers, self.non_persistent
        ):
            _restore_dict(module._modules, children)
            _restore_dict(module._parameters, params)
            _restore_dict(module._buffers, buffers)
            module._non_persistent_buffers_set.clear()
            module._non_persistent_buffers_set.update(non_persistent)
            module.training = training
            for key, saved in hooks.items():
                _restore_dict(getattr(module, key), saved)
            for name in list(vars(module)):
                # attributes that shadow a restored parameter/buffer/submodule would hide it
                if name in params or name in buffers or name in children:
                    del module.__dict__[name]
        for key, saved in self.global_hooks.items():
            _restore_dict(getattr(_module_globals, key), saved)
        with torch.no_grad():
            for key, tensor in self.tensors.items():
                saved = self.data[key]
                if not bitwise_equal(tensor.data, saved):
                    if (
                        tensor.data.shape == saved.shape
                        and tensor.data.dtype == saved.dtype
                        and tensor.device == saved.device
                    ):
                        tensor.data.copy_(saved)
                    else:
                        tensor.data = saved
                if tensor.requires_grad != self.requires_grad[key] and tensor.is_leaf:
                    tensor.requires_grad_(self.requires_grad[key])
                original_grad, grad_copy = self.grads[key]
                if original_grad is None:
                    if tensor.grad is not None:
                        tensor.grad = None
                else:
                    if tensor.grad is not original_grad:
                        tensor.grad = original_grad
                    if not bitwise_equal(original_grad, grad_copy):
                        if original_grad.shape == grad_copy.shape and original_grad.dtype == grad_copy.dtype:
                            original_grad.copy_(grad_copy)
                        else:
                            tensor.grad = grad_copy
                for attr, saved_hooks in self.tensor_hooks[key].items():
                    current = getattr(tensor, attr, None)
                    if saved_hooks is None:
                        if current:
                            setattr(tensor, attr, None)
                    elif current is not None:
                        _restore_dict(current, saved_hooks)


def _restore_dict(current: dict[Any, Any], saved: dict[Any, Any]) -> None:
    """Make ``current`` hold exactly the saved entries (by identity), in the saved order."""
    same = list(current) == list(saved) and all(current[k] is saved[k] for k in saved)
    if not same:
        current.clear()
        current.update(saved)


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
    stochastic = stochastic_modules(model)
    if mode == "refuse" and stochastic:
        raise UnsupportedModelError(
            f"The model has train-mode stochastic modules ({', '.join(stochastic)}); call model.eval() "
            "or pass mode='eval' to analyse it in eval semantics."
        )
    snapshot = _Snapshot(model)
    report = GuardReport(
        mode="train" if mode == "train" else "eval", switched_to_eval=stochastic if mode == "eval" else []
    )
    token = _active.set({**active, id(model): report})
    try:
        if mode == "eval":
            for module in snapshot.modules:
                module.training = False
        yield report
    finally:
        _active.reset(token)
        snapshot.restore()
