"""A fresh copy of a model at its initial weights: the starting point of every retraining.

The generalization diagnostics (memorisation, label noise, learning curves, regularisation) and
the data-dependent PAC-Bayes prior retrain the model from where its training started. This is
the one place that builds that starting point:

* a deep copy of the model, so the caller's model is never touched;
* the caller's forward hooks and pre-hooks are dropped from the copy (they belong to the caller's
  model and must not fire during retraining), gradients cleared, every parameter trainable;
* the weights are ``init_state`` when given (loaded non-strictly: buffers missing from it keep the
  model's values); otherwise every module with ``reset_parameters`` is re-initialised under
  ``seed``, inside ``torch.random.fork_rng`` so the caller's global random stream is left as it was.

Example:
    >>> import torch
    >>> net = torch.nn.Linear(3, 2)
    >>> start = {k: torch.zeros_like(v) for k, v in net.state_dict().items()}
    >>> float(initial_copy(net, start).weight.abs().sum())
    0.0
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from torch import nn

from deepscope._validation import check_int
from deepscope.errors import invalid_parameter

__all__ = ["initial_copy"]


def initial_copy(model: nn.Module, init_state: Mapping[str, torch.Tensor] | None = None, *, seed: int = 0) -> nn.Module:
    """A deep copy of ``model`` at ``init_state``, or re-initialised under ``seed`` when it is None.

    Args:
        model: any ``nn.Module`` (left untouched).
        init_state: the weights at initialisation (e.g. ``Problem.init_state`` or
            ``TrainingRun.init_state``), loaded with ``strict=False``.
        seed: seeds ``reset_parameters`` when ``init_state`` is None (ignored otherwise).

    Returns:
        The copy, with no forward hooks, no gradients and every parameter requiring grad.
    """
    if not isinstance(model, nn.Module):
        raise invalid_parameter("model", "initial_copy", "a torch.nn.Module", model)
    if init_state is not None and not isinstance(init_state, Mapping):
        raise invalid_parameter(
            "init_state", "initial_copy", "a state_dict (mapping of names to tensors) or None", init_state
        )
    seed = check_int(seed, "seed", "initial_copy", minimum=0)
    clone = copy.deepcopy(model)
    for module in clone.modules():  # the caller's hooks stay with the caller's model
        module._forward_hooks.clear()
        module._forward_pre_hooks.clear()
    for parameter in clone.parameters():
        parameter.grad = None
        parameter.requires_grad_(True)
    if init_state is not None:
        clone.load_state_dict(dict(init_state.items()), strict=False)
    else:
        with torch.random.fork_rng(devices=[]):  # the caller's global RNG stream is left as it was
            torch.manual_seed(seed)
            for module in clone.modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
    return clone
