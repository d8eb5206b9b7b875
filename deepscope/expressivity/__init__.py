"""Expressivity and architecture: exact linear regions, capacity bounds, signal propagation, Lipschitz."""

from deepscope.expressivity.regions import LinearRegions, linear_regions

__all__ = ["LinearRegions", "linear_regions"]
