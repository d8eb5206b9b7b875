"""Non-finite weights: find them, and refuse a model whose every output would be NaN.

A model whose training diverged (or whose checkpoint was corrupted) holds NaN or infinite
parameters; every forward pass then returns NaN and every analysis a column of NaN that looks
like a result. :func:`check_finite_model` is the one check that Problem and the ``@analysis`` wrapper (every
analysis that runs the model, attribution methods included) make, once, before any work; :func:`nonfinite_tensors` lists the culprits for the model card.

Parameters must be finite. Buffers must not be NaN, but may hold ``±inf`` on purpose (e.g. an
additive attention mask of ``-inf``), so infinite buffer entries are allowed.

Example:
    >>> import torch
    >>> net = torch.nn.Linear(2, 1)
    >>> with torch.no_grad():
    ...     net.weight[0, 1] = float("nan")
    >>> nonfinite_tensors(net)
    [('weight', 1, 2)]
"""

from __future__ import annotations

import torch
from torch import nn

from deepscope.errors import NonFiniteError

__all__ = ["nonfinite_tensors", "check_finite_model"]


def _bad_count(tensor: torch.Tensor, *, allow_infinite: bool) -> int:
    if not (tensor.is_floating_point() or tensor.is_complex()) or tensor.numel() == 0:
        return 0
    data = tensor.detach()
    bad = torch.isnan(data) if allow_infinite else ~torch.isfinite(data)
    return int(bad.sum()) if bool(bad.any()) else 0


def nonfinite_tensors(model: nn.Module) -> list[tuple[str, int, int]]:
    """``(name, bad values, total values)`` for each parameter with NaN/Inf and each buffer with NaN.

    Tied parameters are listed once (under their first name).
    """
    found = []
    for name, parameter in model.named_parameters():
        bad = _bad_count(parameter, allow_infinite=False)
        if bad:
            found.append((name, bad, parameter.numel()))
    for name, buffer in model.named_buffers():
        bad = _bad_count(buffer, allow_infinite=True)
        if bad:
            found.append((name, bad, buffer.numel()))
    return found


def describe_nonfinite(model: nn.Module, found: list[tuple[str, int, int]]) -> str:
    """One phrase naming the first offending tensor, its layer (module name and type) and the rest."""
    modules = dict(model.named_modules())
    name, bad, total = found[0]
    layer = name.rpartition(".")[0]
    kind = type(modules[layer]).__name__ if layer in modules else "?"
    text = f"'{name}' (layer '{layer or '(model)'}', {kind}) has {bad} of {total} values NaN or infinite"
    if len(found) > 1:
        others = ", ".join(f"'{n}'" for n, _, _ in found[1:4]) + (", ..." if len(found) > 4 else "")
        text += f"; so do {len(found) - 1} more tensor(s): {others}"
    return text


def check_finite_model(model: nn.Module, owner: str) -> None:
    """Raise :class:`~deepscope.errors.NonFiniteError` naming the layer if the model's weights are not finite."""
    found = nonfinite_tensors(model)
    if found:
        raise NonFiniteError(
            f"{owner}: the model's weights are not finite: {describe_nonfinite(model, found)}. Every result "
            "would be NaN; load a finite checkpoint (a diverged training run leaves NaN weights: lower the learning rate)."
        )
