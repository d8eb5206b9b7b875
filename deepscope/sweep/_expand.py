"""From a validated sweep spec to its trials: the configs (:func:`expand`) and their keys (:func:`trial_key`).

Every trial is a plain dict: the spec's ``dataset``, ``model``, ``train``, ``data`` and
``analyses`` with the searched values substituted, plus ``seed``. Its key is the first 16 hex
digits of the SHA-256 of its canonical JSON, so the same settings always have the same key,
whichever file or executor produced them.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import random
from collections.abc import Mapping
from typing import Any

__all__ = ["canonical_json", "expand", "trial_key"]


def expand(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The trial configs of a validated spec, in a stable order (grid points x seeds, or draws x seeds).

    Random search draws ``search.samples`` points from ``random.Random(search.seed)``, one after the
    other, so raising ``samples`` keeps the earlier points (a sweep can be extended).
    """
    grid = spec["search"]["grid"]
    paths = list(grid)
    if spec["search"]["kind"] == "grid":
        points = [dict(zip(paths, combo)) for combo in itertools.product(*(grid[p] for p in paths))]
    else:
        rng = random.Random(spec["search"]["seed"])
        points = [{p: _draw(grid[p], rng) for p in paths} for _ in range(spec["search"]["samples"])]
    sections = ("dataset", "model", "train", "data", "analyses")
    if "kind" in spec:  # "train" configs carry no kind, so their keys never change
        sections += ("kind", "params")
    base = {key: copy.deepcopy(spec[key]) for key in sections}
    configs = []
    for point in points:
        for seed in spec["seeds"]:
            config = copy.deepcopy(base)
            for path, value in point.items():
                section, key = path.split(".", 1)
                config[section][key] = value
            config["seed"] = seed
            configs.append(config)
    return configs


def _draw(distribution: Any, rng: random.Random) -> Any:
    if isinstance(distribution, list):
        return distribution[rng.randrange(len(distribution))]
    kind, (low, high) = next(iter(distribution.items()))
    if kind == "uniform":
        return rng.uniform(low, high)
    if kind == "loguniform":
        return math.exp(rng.uniform(math.log(low), math.log(high)))
    return rng.randint(int(low), int(high))


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, floats as repr: the same config always gives the same text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def trial_key(config: Mapping[str, Any]) -> str:
    """A stable 16-hex-digit key of a trial config (SHA-256 of its canonical JSON)."""
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()[:16]
