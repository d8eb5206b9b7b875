"""Populations of models: a declarative sweep, trials run by a local pool or Ray, an SQLite store.

The theory's questions (which complexity measure predicts generalization; how curvature and
capacity move with width, learning rate or label noise) are about populations of trained models.
A sweep is a spec (:mod:`deepscope.sweep.spec`) expanded into trials; each trial is a pure function
of its config and seed (:mod:`deepscope.sweep.trial`); executors only decide where trials run
(:mod:`deepscope.sweep.executors`); the store is the single source of truth
(:mod:`deepscope.sweep.store`).

Example:
    >>> import deepscope.sweep as sweep
    >>> status = sweep.run("builtin:generalization-small", store="gen.db")   # doctest: +SKIP
    >>> frame = sweep.load("gen.db")                                           # doctest: +SKIP
"""

from deepscope.sweep.runner import SweepStatus, load, resolve_spec, run, status
from deepscope.sweep.spec import SpecError, expand, parse_spec, read_spec, trial_key
from deepscope.sweep.store import StoreError, SweepStore
from deepscope.sweep.studies import BUILTIN_STUDIES, builtin_spec
from deepscope.sweep.trial import TrialOutput, run_trial

__all__ = [
    "BUILTIN_STUDIES",
    "SpecError",
    "StoreError",
    "SweepStatus",
    "SweepStore",
    "TrialOutput",
    "builtin_spec",
    "expand",
    "load",
    "parse_spec",
    "read_spec",
    "resolve_spec",
    "run",
    "run_trial",
    "status",
    "trial_key",
]
