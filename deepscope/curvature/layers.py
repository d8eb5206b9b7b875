"""Per-layer curvature: top eigenvalues and trace of each layer's diagonal Hessian block.

The block ``H_ll = ∂²L/∂θ_l²`` of layer ``l`` (its weight and bias together) measures how sharp
the loss is along that layer's parameters alone. By Cauchy interlacing ``λ_max(H_ll) ≤ λ_max(H)``,
and ``tr H = Σ_l tr H_ll``, so the per-layer traces split the total curvature between layers
(cf. the layer-wise analysis of Sankar et al., 2021).

Example:
    >>> result = hessian_by_layer(problem, k=1)  # doctest: +SKIP
    >>> result.rows()[0]["layer"]                # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np

from deepscope._validation import check_float, check_int
from deepscope.curvature.hvp import HessianOperator
from deepscope.curvature.lanczos import eigen_result_from_operator
from deepscope.curvature.trace import trace_of_operator
from deepscope.registry import analysis
from deepscope.results import Result

if TYPE_CHECKING:
    from deepscope.problem import Problem

__all__ = ["LayerCurvatureResult", "hessian_by_layer", "group_by_layer"]


def group_by_layer(names: list[str]) -> dict[str, list[str]]:
    """Parameter names grouped by their module ("0.weight", "0.bias" -> layer "0"), in model order."""
    groups: dict[str, list[str]] = {}
    for name in names:
        layer = name.rsplit(".", 1)[0] if "." in name else name
        groups.setdefault(layer, []).append(name)
    return groups


@dataclasses.dataclass(frozen=True)
class LayerCurvatureResult(Result):
    """One row per layer: parameters, top eigenvalues, trace ± standard error, products spent."""

    layers: list[str]
    n_params: list[int]
    top_eigenvalues: list[list[float]]
    traces: list[float]
    trace_standard_errors: list[float]
    n_hvps: int
    note: str = ""

    def rows(self) -> list[dict[str, Any]]:
        return [
            {
                "layer": layer,
                "n_params": count,
                "top_eigenvalue": values[0],
                "top_eigenvalues": values,
                "trace": trace,
                "trace_standard_error": error,
                "mean_eigenvalue": trace / count,
            }
            for layer, count, values, trace, error in zip(
                self.layers, self.n_params, self.top_eigenvalues, self.traces, self.trace_standard_errors
            )
        ]

    def plot(self, ax=None):
        from deepscope._figures import new_figure

        figure, axes = new_figure(7.0, 3.0, ncols=2)
        index = np.arange(len(self.layers))
        axes[0].bar(index, [v[0] for v in self.top_eigenvalues], color="C0")
        axes[0].set_title("top eigenvalue per layer")
        axes[1].bar(index, self.traces, yerr=[3 * e for e in self.trace_standard_errors], color="C1", capsize=3)
        axes[1].set_title("trace per layer (± 3 SE)")
        for axis in axes:
            axis.set_xticks(index, self.layers, rotation=45, fontsize=7)
        return figure


@analysis(takes="problem", family="curvature", example_kwargs={"max_samples": 8, "max_iter": 8, "max_hvps": 12})
def hessian_by_layer(
    problem: Problem,
    k: int = 1,
    tol: float = 1e-3,
    trace_rel_tol: float = 0.05,
    max_iter: int | None = None,
    max_hvps: int = 300,
    seed: int = 0,
    *,
    max_samples: int | None = None,
    kind: str = "hessian",
    split: str = "train",
) -> LayerCurvatureResult:
    """Top-``k`` eigenvalues (Lanczos) and trace (Hutch++) of each layer's diagonal Hessian block.

    Args:
        problem: a :class:`deepscope.Problem`.
        k: eigenvalues per layer (capped at the layer's parameter count).
        tol: Lanczos residual tolerance.
        trace_rel_tol: relative standard error at which each layer's trace stops.
        max_iter: Lanczos products per layer (default as in ``hessian_eigenvalues``).
        max_hvps: trace products per layer.
        seed, max_samples, kind, split: as in :func:`~deepscope.curvature.hessian_eigenvalues`.

    Returns:
        A :class:`LayerCurvatureResult` (one row per layer, in model order).

    Example:
        >>> hessian_by_layer(problem).rows()  # doctest: +SKIP
    """
    check_int(k, "k", "hessian_by_layer", minimum=1)
    check_float(tol, "tol", "hessian_by_layer", minimum=0.0, strict_minimum=True)  # as hessian_eigenvalues checks
    if max_iter is not None:
        check_int(max_iter, "max_iter", "hessian_by_layer", minimum=1)
    check_float(trace_rel_tol, "trace_rel_tol", "hessian_by_layer", minimum=0.0, strict_minimum=True)
    check_int(max_hvps, "max_hvps", "hessian_by_layer", minimum=2)
    groups = group_by_layer(list(problem.parameters(trainable_only=True)))
    layers, counts, tops, traces, errors, products, note = [], [], [], [], [], 0, ""
    for layer, names in groups.items():
        operator = HessianOperator.from_problem(
            problem, split=split, max_samples=max_samples, parameter_names=names, kind=kind, owner="hessian_by_layer"
        )
        spectrum = eigen_result_from_operator(
            operator, k=min(k, operator.n_params), tol=tol, max_iter=max_iter, seed=seed, owner="hessian_by_layer"
        )
        trace = trace_of_operator(operator, rel_tol=trace_rel_tol, max_hvps=max_hvps, seed=seed)
        layers.append(layer)
        counts.append(operator.n_params)
        tops.append(spectrum.eigenvalues)
        traces.append(trace.trace)
        errors.append(trace.standard_error)
        products += operator.n_products
        note = spectrum.note
    return LayerCurvatureResult(
        layers=layers,
        n_params=counts,
        top_eigenvalues=tops,
        traces=traces,
        trace_standard_errors=errors,
        n_hvps=products,
        note=note,
    )
