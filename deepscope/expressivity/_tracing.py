"""torch.fx tracing for the expressivity analyses, with a refusal that names the analysis the user called.

:func:`deepscope.expressivity._pwl.trace` words its refusal for exact linear regions; lipschitz,
layer_health, trajectory_length and capacity trace the same way but must say that *they* need a
traceable model (a HuggingFace BERT, with its data-dependent control flow, is refused by fx).

Example:
    >>> import torch
    >>> traced(torch.nn.Sequential(torch.nn.Linear(2, 2)), "lipschitz").graph is not None
    True
"""

from __future__ import annotations

from torch import fx, nn

from deepscope.errors import UnsupportedModelError
from deepscope.expressivity import _pwl

__all__ = ["traced"]


def traced(model: nn.Module, owner: str) -> fx.GraphModule:
    """``_pwl.trace(model)``; a model fx cannot trace is refused with ``owner`` named as the analysis."""
    try:
        return _pwl.trace(model)
    except UnsupportedModelError as error:
        cause = error.__cause__
        reason = f"{type(cause).__name__}: {cause}" if cause is not None else str(error)
        raise UnsupportedModelError(
            f"{owner} needs a model torch.fx can trace (it walks the network's graph); tracing "
            f"{type(model).__name__} failed ({reason})."
        ) from error
