"""Curvature of the loss: Hessian-vector products, spectrum, trace, density, NTK and landscape."""

from deepscope.curvature.density import DensityResult, hessian_density
from deepscope.curvature.hvp import (
    HessianOperator,
    ParameterSpace,
    dense_hessian,
    gauss_newton_vector_product,
    hessian_vector_product,
)
from deepscope.curvature.lanczos import EigenResult, hessian_eigenvalues
from deepscope.curvature.landscape import InterpolationResult, SurfaceResult, loss_interpolation, loss_surface
from deepscope.curvature.layers import LayerCurvatureResult, hessian_by_layer
from deepscope.curvature.ntk import NTKResult, ntk
from deepscope.curvature.ntk_dynamics import NTKDynamicsResult, ntk_dynamics
from deepscope.curvature.trace import TraceResult, hessian_trace

__all__ = [
    "HessianOperator",
    "ParameterSpace",
    "dense_hessian",
    "gauss_newton_vector_product",
    "hessian_vector_product",
    "EigenResult",
    "hessian_eigenvalues",
    "TraceResult",
    "hessian_trace",
    "DensityResult",
    "hessian_density",
    "LayerCurvatureResult",
    "hessian_by_layer",
    "NTKResult",
    "ntk",
    "NTKDynamicsResult",
    "ntk_dynamics",
    "InterpolationResult",
    "SurfaceResult",
    "loss_interpolation",
    "loss_surface",
]
