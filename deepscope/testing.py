"""Standard fixtures and the model-untouched check used by the conformance suite.

:func:`make_fixture` builds a small, deterministic model-and-data pair that is deliberately
awkward for an analysis to leave alone: the model is in train mode (Dropout, BatchNorm), has a
forward hook, a frozen parameter, existing ``.grad`` tensors, and non-default running stats.
:func:`check_model_untouched` calls an analysis and asserts — on success or on error — that the
model is bit-identical to before. Third-party analyses can use both, like scikit-learn's
``check_estimator``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from deepscope._validation import check_choice
from deepscope.guard import bitwise_equal

__all__ = ["Fixture", "make_fixture", "model_fingerprint", "check_model_untouched", "FIXTURE_KINDS"]

FIXTURE_KINDS = ("mlp", "relu_mlp", "cnn", "sequence")


@dataclasses.dataclass
class Fixture:
    """A model, inputs, integer labels and (for planted data) a relevance mask."""

    kind: str
    model: nn.Module
    inputs: torch.Tensor
    targets: torch.Tensor
    num_classes: int
    mask: torch.Tensor | None = None

    def problem(self):  # -> deepscope.Problem
        from deepscope.problem import Problem

        half = len(self.inputs) // 2
        return Problem(
            self.model,
            (self.inputs[:half], self.targets[:half]),
            (self.inputs[half:], self.targets[half:]),
            init_state={k: v.detach().clone() * 0.9 for k, v in self.model.state_dict().items()},
            batch_size=16,
        )


def _awkward(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> nn.Module:
    """Give the model hooks, grads, a frozen parameter, trained BN stats; leave it in train mode."""
    model.train()
    with torch.no_grad():
        model(inputs)  # moves BatchNorm running statistics away from their defaults
    loss = nn.functional.cross_entropy(model(inputs), targets)
    loss.backward()
    first = next(model.parameters())
    first.requires_grad_(False)
    model.register_forward_hook(lambda module, args, output: None)
    return model


def make_fixture(kind: str = "mlp", seed: int = 0) -> Fixture:
    """A small deterministic fixture: "mlp", "relu_mlp", "cnn" or "sequence" (see module docstring)."""
    check_choice(kind, "kind", "make_fixture", FIXTURE_KINDS)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    mask = None
    if kind == "mlp":
        inputs = torch.randn(32, 6, generator=generator)
        targets = (inputs[:, 0] + inputs[:, 1] > 0).long() + (inputs[:, 2] > 1).long()
        model = nn.Sequential(
            nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Dropout(0.2), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3)
        )
        classes = 3
    elif kind == "relu_mlp":
        inputs = torch.randn(32, 2, generator=generator)
        targets = (inputs[:, 0] * inputs[:, 1] > 0).long()
        model = nn.Sequential(
            nn.Linear(2, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.1), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2)
        )
        classes = 2
    elif kind == "cnn":
        inputs = torch.randn(16, 1, 8, 8, generator=generator)
        targets = (inputs[:, 0, :4, :4].mean(dim=(1, 2)) > 0).long()
        mask = torch.zeros_like(inputs)
        mask[:, :, :4, :4] = 1.0
        model = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(4, 4, 3, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Dropout(0.1),
            nn.Linear(64, 2),
        )
        classes = 2
    else:
        letters = torch.randint(0, 4, (16, 20), generator=generator)
        inputs = nn.functional.one_hot(letters, 4).permute(0, 2, 1).float()
        targets = (letters[:, 5:9] == 0).all(dim=1).long() | (torch.arange(16) % 2)
        mask = torch.zeros_like(inputs)
        mask[:, :, 5:9] = 1.0
        model = nn.Sequential(
            nn.Conv1d(4, 6, 5, padding=2),
            nn.BatchNorm1d(6),
            nn.ReLU(),
            nn.MaxPool1d(2),
            nn.Flatten(),
            nn.Dropout(0.1),
            nn.Linear(60, 2),
        )
        classes = 2
    return Fixture(kind, _awkward(model, inputs, targets), inputs, targets, classes, mask)


def model_fingerprint(model: nn.Module) -> dict[str, Any]:
    """Everything the guard promises to keep, in a comparable form (tensors cloned)."""
    tensors = {f"param:{n}": p for n, p in model.named_parameters(remove_duplicate=False)}
    tensors.update({f"buffer:{n}": b for n, b in model.named_buffers(remove_duplicate=False)})
    return {
        "ids": {k: id(v) for k, v in tensors.items()},
        "data": {k: v.detach().clone() for k, v in tensors.items()},
        "grads": {k: (None if v.grad is None else v.grad.detach().clone()) for k, v in tensors.items()},
        "grad_ids": {k: id(v.grad) for k, v in tensors.items()},
        "requires_grad": {k: v.requires_grad for k, v in tensors.items()},
        "training": {n: m.training for n, m in model.named_modules()},
        "modules": {n: id(m) for n, m in model.named_modules()},
        "hooks": {
            n: {
                k: list(getattr(m, k).keys())
                for k in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
            }
            for n, m in model.named_modules()
        },
        "tensor_hooks": {k: list((getattr(v, "_backward_hooks", None) or {}).keys()) for k, v in tensors.items()},
    }


def fingerprint_differences(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Human-readable list of what changed between two fingerprints (empty when identical)."""
    problems = []
    for key in ("ids", "grad_ids", "requires_grad", "training", "modules", "hooks", "tensor_hooks"):
        if before[key] != after[key]:
            changed = [k for k in set(before[key]) | set(after[key]) if before[key].get(k) != after[key].get(k)]
            problems.append(f"{key} changed for {sorted(changed)[:5]}")
    for key in ("data", "grads"):
        changed = [k for k in before[key] if not bitwise_equal(before[key][k], after[key].get(k))]
        if changed or set(before[key]) != set(after[key]):
            problems.append(f"{key} changed for {sorted(changed)[:5]}")
    return problems


def check_model_untouched(function: Callable[..., Any], model: nn.Module, *args: Any, **kwargs: Any) -> Any:
    """Call ``function(*args, **kwargs)`` and raise AssertionError if ``model`` changed in any way.

    Returns the function's result, or re-raises its exception after the check.
    """
    before = model_fingerprint(model)
    error: Exception | None = None
    result = None
    try:
        result = function(*args, **kwargs)
    except Exception as caught:  # checked below, then re-raised unchanged
        error = caught
    problems = fingerprint_differences(before, model_fingerprint(model))
    if problems:
        raise AssertionError(
            f"{getattr(function, '__name__', function)} changed the caller's model: " + "; ".join(problems)
        )
    if error is not None:
        raise error
    return result
