"""The "typical work" model of issue 14: a digits CNN trained to convergence, shared by the benchmarks.

``Conv2d(1→32, 3×3) → ReLU → Conv2d(32→64, 3×3) → ReLU → MaxPool2d(2) → Flatten → Linear(1024→128) →
ReLU → Linear(128→10)`` (the layout of PyTorch's MNIST example scaled to the 8×8 digits; 151,306
parameters), trained with :func:`deepscope.models.train` for 5 epochs of Adam (lr 1e-3, batch 64,
seed 0) on the digits training split. Integrated gradients on it needs few quadrature steps, unlike
the 3-epoch BatchNorm ``cnn2d`` of the hard-model rows.

Example:
    >>> model, digits = typical_cnn()  # doctest: +SKIP
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from deepscope.datasets import load
from deepscope.models import train

__all__ = ["typical_cnn", "TYPICAL_CNN"]

TYPICAL_CNN = "digits CNN 2xConv 32/64 + Linear 1024-128-10 (151k params, 5 epochs Adam)"


def _architecture() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(1024, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
    )


@functools.lru_cache(maxsize=1)
def _trained():
    digits = load("digits", seed=0)
    torch.manual_seed(0)
    run = train(_architecture(), digits, epochs=5, lr=1e-3, seed=0)
    return run, digits


def typical_cnn() -> tuple[nn.Module, object]:
    """The trained typical CNN (eval mode) and the digits splits it was trained on."""
    run, digits = _trained()
    return run.model.eval(), digits


def typical_run():
    """The :class:`~deepscope.models.TrainingRun` of :func:`typical_cnn` (for ``init_state``)."""
    return _trained()[0]
