"""deepscope: the theory of deep learning, measured on a real PyTorch model.

The public surface is explicit; each family lives in its own subpackage
(``deepscope.attribution``, ``deepscope.generalization``, ``deepscope.curvature``,
``deepscope.dynamics``, ``deepscope.expressivity``) and is imported on demand.
"""

# ruff: noqa: E402 -- the sys.path clean-up below must run before any other import
import os as _os
import sys as _sys

if _sys.argv[:1] == ["-m"]:  # pragma: no branch
    # `python -m deepscope` (argv[0] is "-m" while the package is imported): Python put the folder it was
    # started from first on sys.path, so a torch.py or numpy.py lying there would be imported below instead
    # of the real library. Take that folder off before importing anything (the CLI strips it again later).
    try:
        _cwd = _os.path.realpath(_os.getcwd())
    except OSError:  # the folder was deleted: only the relative entries can point at it
        _cwd = None
    _sys.path[:] = [
        _entry
        for _entry in _sys.path
        if _entry not in ("", ".") and (_cwd is None or _os.path.realpath(_entry) != _cwd)
    ]

from deepscope import datasets, io  # submodules, part of the public surface
from deepscope.errors import (
    DataError,
    DeepscopeError,
    InvalidParameterError,
    NonFiniteError,
    UnsafeFileError,
    UnsupportedModelError,
)
from deepscope.guard import model_guard
from deepscope.models import train
from deepscope.problem import Problem
from deepscope.report.audit import audit
from deepscope.results import Result

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "DeepscopeError",
    "InvalidParameterError",
    "DataError",
    "UnsafeFileError",
    "UnsupportedModelError",
    "NonFiniteError",
    "Problem",
    "Result",
    "model_guard",
    "datasets",
    "io",
    "train",
    "audit",
]
