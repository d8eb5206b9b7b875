"""Built-in sweep specs: the generalization-measure study of Jiang et al. 2020 at two budgets.

``builtin_spec("generalization-small")`` — at least 96 MLPs on mnist1d, a grid over five
hyperparameters (width, depth, learning rate, weight decay, batch size), every model trained with
SGD until its train cross-entropy reaches the stop loss (or the epoch cap), then every measure of
:func:`deepscope.generalization.measures` and the gap. Sized for a 2-core machine.

``builtin_spec("generalization-full")`` — the same protocol on at least 500 models (more values per
hyperparameter, dropout and two seeds), meant for a Ray cluster.

The spec files ship in this folder (``*.toml``); copy one to start your own sweep.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deepscope.errors import invalid_parameter

__all__ = ["BUILTIN_STUDIES", "builtin_spec", "builtin_path"]

_HERE = Path(__file__).parent
BUILTIN_STUDIES = tuple(sorted(p.stem.replace("_", "-") for p in _HERE.glob("*.toml")))


def builtin_path(name: str) -> Path:
    """The TOML file of a built-in study."""
    if name not in BUILTIN_STUDIES:
        raise invalid_parameter("name", "builtin_spec", "one of " + ", ".join(map(repr, BUILTIN_STUDIES)), name)
    return _HERE / f"{name.replace('-', '_')}.toml"


def builtin_spec(name: str) -> dict[str, Any]:
    """The validated spec of a built-in study."""
    from deepscope.sweep.spec import read_spec

    return read_spec(builtin_path(name))
