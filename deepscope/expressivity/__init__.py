"""Expressivity and architecture: exact linear regions, capacity bounds, signal propagation, Lipschitz."""

from deepscope.expressivity.capacity import Capacity, capacity, montufar_lower_bound, serra_upper_bound
from deepscope.expressivity.regions import LinearRegions, linear_regions

__all__ = ["Capacity", "LinearRegions", "capacity", "linear_regions", "montufar_lower_bound", "serra_upper_bound"]
