"""Trial kinds: what one trial computes. "train" (the default) is :mod:`deepscope.sweep.trial`'s
train-then-analyse; the theory gallery's experiments add kinds of their own (full-batch gradient
descent with sharpness tracking, NTK-parameterised training, ...).

A kind lives in a module of deepscope's own, named in :data:`KINDS` — an explicit allowlist, so
a spec file can never make a worker import anything else. The module defines:

* ``PARAMS``: ``{key: (checker, default)}``, the kind's ``[params]`` table (checkers as in
  :mod:`deepscope.sweep.spec`: return the value normalised or raise ValueError with what was expected);
* ``run_kind(config) -> (metrics, history, weights)``: metrics ``{name: (value, stderr|None)}``,
  a JSON-able history dict (or None) and safetensors bytes of the trained weights (or None).

A kind's trial is pure like a "train" trial: it seeds everything from ``config["seed"]``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["KINDS", "kind_module"]

KINDS: dict[str, str] = {
    "train": "deepscope.sweep.trial",
    "edge_of_stability": "deepscope.experiments.edge_of_stability",
    "lazy_training": "deepscope.experiments.lazy_training",
    "linear_regions": "deepscope.experiments.linear_regions",
    "edge_of_chaos": "deepscope.experiments.edge_of_chaos",
    "random_labels": "deepscope.experiments.random_labels",
    "double_descent": "deepscope.experiments.double_descent",
    "heavy_tails": "deepscope.experiments.heavy_tails",
}


def kind_module(kind: str) -> ModuleType:
    """The module of a registered kind (imports only names in :data:`KINDS`)."""
    return importlib.import_module(KINDS[kind])
