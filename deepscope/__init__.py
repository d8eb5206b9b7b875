"""deepscope: the theory of deep learning, measured on a real PyTorch model.

The public surface is explicit; each family lives in its own subpackage
(``deepscope.attribution``, ``deepscope.generalization``, ``deepscope.curvature``,
``deepscope.dynamics``, ``deepscope.expressivity``) and is imported on demand.
"""

from deepscope import datasets, io  # submodules, part of the public surface
from deepscope.errors import DataError, DeepscopeError, InvalidParameterError, UnsafeFileError, UnsupportedModelError
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
    "Problem",
    "Result",
    "model_guard",
    "datasets",
    "io",
    "train",
    "audit",
]
