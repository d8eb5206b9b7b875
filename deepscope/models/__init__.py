"""Reference architectures, a seeded trainer and the model summary.

``build(name, input_shape, num_classes, **kwargs)`` makes one of the small reference networks
("mlp", "cnn2d", "cnn1d", "resnet", "transformer", "basset"); ``default_architecture(dataset)`` picks one
from the input shape; ``train(model, dataset, ...)`` trains a deep copy bit-reproducibly;
``model_summary(model, input_shape)`` describes any ``nn.Module``.

Example:
    >>> import torch
    >>> net = build("mlp", (4,), 3, widths=(8,))
    >>> net(torch.zeros(2, 4)).shape
    torch.Size([2, 3])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from deepscope._validation import check_choice
from deepscope.errors import DataError, invalid_parameter
from deepscope.models._layers import ACTIVATIONS
from deepscope.models.basset import Basset
from deepscope.models.cnn1d import CNN1d
from deepscope.models.cnn2d import CNN2d
from deepscope.models.gap import GapEstimate, generalization_gap
from deepscope.models.mlp import MLP
from deepscope.models.resnet import ResNet
from deepscope.models.summary import ModelSummary, model_summary
from deepscope.models.trainer import TrainingHistory, TrainingRun, train
from deepscope.models.transformer import Transformer

__all__ = [
    "ARCHITECTURES",
    "ACTIVATIONS",
    "build",
    "default_architecture",
    "MLP",
    "CNN2d",
    "CNN1d",
    "Basset",
    "ResNet",
    "Transformer",
    "train",
    "TrainingRun",
    "TrainingHistory",
    "GapEstimate",
    "generalization_gap",
    "model_summary",
    "ModelSummary",
]

ARCHITECTURES: dict[str, type[nn.Module]] = {
    "mlp": MLP,
    "cnn2d": CNN2d,
    "cnn1d": CNN1d,
    "resnet": ResNet,
    "transformer": Transformer,
    "basset": Basset,
}


def build(name: str, input_shape: Sequence[int], num_classes: int, **kwargs: Any) -> nn.Module:
    """Build a reference architecture by name.

    Args:
        name: one of :data:`ARCHITECTURES` ("mlp", "cnn2d", "cnn1d", "resnet", "transformer", "basset").
        input_shape: shape of one example, without the batch dimension, e.g. ``(1, 8, 8)``.
        num_classes: output width.
        **kwargs: architecture options (see each class: ``widths``, ``channels``, ``dropout``, ...).

    Returns:
        A freshly initialised module (weights from torch's global generator: call
        ``torch.manual_seed`` first for reproducible weights). ``model.deepscope_config`` holds
        ``{"arch": name, "arch_kwargs": {...}}`` so that ``build(config["arch"], **config["arch_kwargs"])``
        rebuilds the same architecture (used by ``deepscope.io.save_model``).

    Example:
        >>> build("cnn2d", (1, 8, 8), 10).deepscope_config["arch"]
        'cnn2d'
    """
    check_choice(name, "name", "build", ARCHITECTURES)
    try:
        model = ARCHITECTURES[name](input_shape, num_classes, **kwargs)
    except TypeError as error:
        raise invalid_parameter("kwargs", f"build('{name}')", "options the architecture accepts", kwargs) from error
    shape = [int(s) for s in model.input_shape]
    model.deepscope_config = {
        "arch": name,
        "arch_kwargs": {"input_shape": shape, "num_classes": int(num_classes), **kwargs},
    }
    return model


def default_architecture(dataset: Any) -> str:
    """The reference architecture that suits a dataset's input shape.

    ``(d,)`` tabular -> "mlp"; ``(C, L)`` sequences -> "cnn1d"; ``(C, H, W)`` images -> "cnn2d".

    Args:
        dataset: a :class:`~deepscope.data.DatasetSplits` (anything with ``input_shape``).

    Example:
        >>> from types import SimpleNamespace
        >>> default_architecture(SimpleNamespace(input_shape=(1, 8, 8)))
        'cnn2d'
    """
    shape = getattr(dataset, "input_shape", None)
    if shape is None:
        raise invalid_parameter("dataset", "default_architecture", "a DatasetSplits (with input_shape)", dataset)
    choices = {1: "mlp", 2: "cnn1d", 3: "cnn2d"}
    if len(shape) not in choices:
        raise DataError(
            f"No reference architecture for inputs of shape {tuple(shape)}: expected (d,), (C, L) or (C, H, W)."
        )
    return choices[len(shape)]
