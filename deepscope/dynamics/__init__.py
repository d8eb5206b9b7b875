"""Training dynamics: the Monitor for training loops and the gradient noise scale."""

from deepscope.dynamics.monitor import DynamicsHistory, Monitor
from deepscope.dynamics.noise_scale import NoiseScaleResult, gradient_noise_scale

__all__ = ["Monitor", "DynamicsHistory", "NoiseScaleResult", "gradient_noise_scale"]
