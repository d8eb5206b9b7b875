"""Training dynamics: the Monitor for training loops, its Lightning callback and the gradient noise scale.

``MonitorCallback`` is resolved lazily (module ``__getattr__``) so that importing this package never
imports Lightning, an optional dependency.
"""

from typing import Any

from deepscope.dynamics.monitor import DynamicsHistory, Monitor
from deepscope.dynamics.noise_scale import NoiseScaleResult, gradient_noise_scale

__all__ = ["Monitor", "DynamicsHistory", "MonitorCallback", "NoiseScaleResult", "gradient_noise_scale"]


def __getattr__(name: str) -> Any:
    if name == "MonitorCallback":
        from deepscope.dynamics.lightning import MonitorCallback

        return MonitorCallback
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
