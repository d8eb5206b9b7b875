"""Expressivity and architecture: exact linear regions, capacity bounds, signal propagation, Lipschitz."""

from deepscope.expressivity.activations import (
    ACTIVATIONS,
    ANALYTIC_LIPSCHITZ,
    ActivationCatalogue,
    ActivationProfile,
    activation_catalogue,
)
from deepscope.expressivity.approximation import (
    TARGETS,
    ApproximationExperiment,
    interpolating_relu_network,
    universal_approximation,
)
from deepscope.expressivity.capacity import Capacity, capacity, montufar_lower_bound, serra_upper_bound
from deepscope.expressivity.layer_health import LayerHealth, layer_health
from deepscope.expressivity.lipschitz import LipschitzBounds, lipschitz, operator_norm
from deepscope.expressivity.regions import LinearRegions, linear_regions
from deepscope.expressivity.signal_propagation import SignalPropagation, initialization_verdict, signal_propagation
from deepscope.expressivity.trajectory import TrajectoryLength, trajectory_length

__all__ = [
    "ACTIVATIONS",
    "ANALYTIC_LIPSCHITZ",
    "TARGETS",
    "ActivationCatalogue",
    "ActivationProfile",
    "ApproximationExperiment",
    "Capacity",
    "LayerHealth",
    "LinearRegions",
    "LipschitzBounds",
    "SignalPropagation",
    "TrajectoryLength",
    "activation_catalogue",
    "capacity",
    "initialization_verdict",
    "interpolating_relu_network",
    "layer_health",
    "linear_regions",
    "lipschitz",
    "montufar_lower_bound",
    "operator_norm",
    "serra_upper_bound",
    "signal_propagation",
    "trajectory_length",
    "universal_approximation",
]
