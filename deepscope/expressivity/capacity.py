"""Capacity of a ReLU architecture: parameter count, region-count bounds, expected regions, VC rates."""

from __future__ import annotations

import copy
import dataclasses
import math
import operator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from deepscope._forward import first_forward
from deepscope._validation import check_int
from deepscope.errors import DataError, invalid_parameter
from deepscope.expressivity._tracing import traced
from deepscope.expressivity.regions import LinearRegions
from deepscope.registry import analysis
from deepscope.results import Result

__all__ = ["Capacity", "capacity", "serra_upper_bound", "montufar_lower_bound"]

_NAME = "capacity"
_RELU_MODULES = (nn.ReLU, nn.LeakyReLU)
_RELU_FUNCTIONS = (F.relu, torch.relu, F.leaky_relu)
# the exact bounds for the whole input space take about L * (n0 + 1)^2 big-integer steps (the dynamic
# programme over the running dimension budget); beyond this they are left out with a note (a
# ResNet-18 on 32x32x3 inputs would need 17 * 3073^2 = 1.6e8 steps on integers of thousands of digits)
MAX_BOUND_STEPS = 2_000_000
_SMOOTH = (nn.Tanh, nn.Sigmoid, nn.GELU, nn.SiLU, nn.ELU, nn.Softplus, nn.Mish, nn.SELU, nn.CELU, nn.Hardswish)


def serra_upper_bound(input_dim: int, widths: list[int]) -> int:
    """Serra, Tjandraatmadja & Ramalingam (2018), Theorem 1: the most linear regions a ReLU net can have.

    ``sum over (j_1..j_L) in J of prod_l C(n_l, j_l)`` with
    ``J = {0 <= j_l <= min(n_0, n_1 - j_1, ..., n_{l-1} - j_{l-1}, n_l)}``, computed exactly (Python
    integers) by dynamic programming over the running minimum ``d_l = min(d_{l-1}, n_l - j_l)``.
    For one layer it is Zaslavsky's count ``sum_{j <= n_0} C(n_1, j)`` for hyperplanes in general position.

    Example:
        >>> serra_upper_bound(2, [3])  # 3 lines in the plane: 1 + 3 + 3
        7
    """
    _check_architecture(input_dim, widths, "serra_upper_bound")
    ways = {input_dim: 1}  # running dimension budget -> summed products
    for width in widths:
        following: dict[int, int] = {}
        for budget, total in ways.items():
            for j in range(min(budget, width) + 1):
                key = min(budget, width - j)
                following[key] = following.get(key, 0) + total * math.comb(width, j)
        ways = following
    return sum(ways.values())


def montufar_lower_bound(input_dim: int, widths: list[int]) -> int | None:
    """Montúfar, Pascanu, Cho & Bengio (2014), Theorem 4: regions some weights of this architecture realise.

    ``(prod_{l < L} floor(n_l / n_0)^{n_0}) * sum_{j=0}^{n_0} C(n_L, j)``; defined when every hidden
    width is at least the input dimension ``n_0`` (None otherwise).

    Example:
        >>> montufar_lower_bound(1, [2, 2, 2])  # floor(2/1) * floor(2/1) * (C(2, 0) + C(2, 1))
        12
    """
    _check_architecture(input_dim, widths, "montufar_lower_bound")
    if not widths or any(width < input_dim for width in widths):
        return None
    product = 1
    for width in widths[:-1]:
        product *= (width // input_dim) ** input_dim
    return product * sum(math.comb(widths[-1], j) for j in range(input_dim + 1))


def _check_architecture(input_dim: Any, widths: Any, owner: str) -> None:
    """``input_dim`` an int >= 1 and ``widths`` a sequence of ints >= 1 (0 would divide by zero)."""
    check_int(input_dim, "input_dim", owner, minimum=1)
    if isinstance(widths, (str, bytes)) or not isinstance(widths, (list, tuple)):
        raise invalid_parameter("widths", owner, "a list of ints >= 1 (units per ReLU layer)", widths)
    if any(isinstance(w, bool) or not isinstance(w, (int, np.integer)) or w < 1 for w in widths):
        raise invalid_parameter("widths", owner, "a list of ints >= 1 (units per ReLU layer)", widths)


@dataclasses.dataclass(frozen=True)
class Capacity(Result):
    """Counting capacity of an architecture, next to the measured region count when one is given.

    Attributes:
        parameters, trainable_parameters: number of weights.
        input_dim: ``n_0``, the number of input features.
        widths: ReLU units per nonlinear layer ``[n_1, ..., n_L]``.
        piecewise_linear: whether every nonlinearity is a (leaky) ReLU or max-pool.
        serra_upper, montufar_lower: region-count bounds for the whole input space (exact ints).
        slice_dim: 1 or 2 when a measured partition of a segment/plane was given (else None).
        slice_serra_upper, slice_montufar_lower: the same bounds with ``n_0 = slice_dim`` (a net
            restricted to a plane is a net with 2 inputs), comparable to ``measured_regions``.
        measured_regions, measured_density: from the given LinearRegions result.
        hanin_rolnick_density: predicted breakpoints per unit length along a random line through
            the data (Kac-Rice sum over neurons; None without inputs).
        hanin_rolnick_expected: predicted regions on the measured segment (1-D results only).
        vc_upper_rate, vc_lower_rate: ``W L log2 W`` and ``W L log2(W / L)`` (Bartlett et al. 2019;
            growth rates, constants omitted); vc_units_rate: ``W U`` (their tight Theta(WU)).
        notes: caveats (residual additions, max-pool, smooth activations).
    """

    parameters: int
    trainable_parameters: int
    input_dim: int
    widths: list[int]
    piecewise_linear: bool
    serra_upper: int | None
    montufar_lower: int | None
    slice_dim: int | None
    slice_serra_upper: int | None
    slice_montufar_lower: int | None
    measured_regions: int | None
    measured_density: float | None
    hanin_rolnick_density: float | None
    hanin_rolnick_expected: float | None
    hanin_rolnick_standard_error: float | None
    vc_upper_rate: float
    vc_lower_rate: float
    vc_units_rate: float
    notes: list[str]

    def rows(self) -> list[dict[str, Any]]:
        """One row per quantity: what it is, its value (log10 for huge counts), and what it is compared to."""
        rows = [
            {"quantity": "parameters", "value": self.parameters, "log10": _log10(self.parameters)},
            {"quantity": "ReLU units", "value": sum(self.widths), "log10": _log10(sum(self.widths))},
        ]
        for name, value in (
            ("regions upper bound (Serra 2018)", self.serra_upper),
            ("regions lower bound, best weights (Montufar 2014)", self.montufar_lower),
            (f"regions upper bound on the {self.slice_dim}-D slice", self.slice_serra_upper),
            (f"regions lower bound on the {self.slice_dim}-D slice", self.slice_montufar_lower),
            ("regions measured on the slice", self.measured_regions),
            ("expected regions on the segment (Hanin & Rolnick 2019)", self.hanin_rolnick_expected),
            ("VC dimension rate W L log2 W (Bartlett 2019)", self.vc_upper_rate),
            ("VC dimension rate W L log2(W/L)", self.vc_lower_rate),
        ):
            if value is not None:
                rows.append({"quantity": name, "value": value if _log10(value) < 15 else None, "log10": _log10(value)})
        return rows

    def plot(self, ax=None):
        """log10 of each count or bound as a horizontal bar."""
        from deepscope._figures import new_figure

        rows = [row for row in self.rows() if math.isfinite(row["log10"])]
        figure, ax = new_figure(6.5, 0.35 * len(rows) + 1.0) if ax is None else (ax.figure, ax)
        positions = range(len(rows))
        ax.barh(list(positions), [row["log10"] for row in rows], color="C0")
        ax.set_yticks(list(positions), [row["quantity"] for row in rows], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel("log10")
        return figure


def _log10(value: float | int) -> float:
    if value <= 0:
        return float("-inf")
    if isinstance(value, int) and value > 10**300:
        return (value.bit_length() - 1) * math.log10(2) + math.log10(value / 2 ** (value.bit_length() - 1))
    return math.log10(value)


@analysis(takes="model_inputs", family="expressivity", fixture="relu_mlp")
def capacity(model: nn.Module, inputs: torch.Tensor | None = None, *, input_dim: int | None = None, regions=None):
    """Parameter count, linear-region bounds, the Hanin-Rolnick expectation and VC-dimension rates.

    * Serra et al. (2018) upper bound and Montúfar et al. (2014) lower bound on the number of
      linear regions, for the whole input space and, when ``regions`` is given, for its slice.
    * Hanin & Rolnick (2019): along a line, breakpoints per unit length are
      ``sum over neurons z of E[ |grad z . u| delta(z) ]`` (Kac-Rice), i.e. about (#neurons) times
      a per-neuron density, not exponential in depth. Estimated from ``inputs`` with random unit
      directions ``u`` and a Gaussian kernel for ``delta``.
    * Bartlett, Harvey, Liaw & Mehrabian (2019): VC dimension of piecewise-linear nets is
      ``O(W L log W)`` and ``Omega(W L log(W/L))``; reported as rates (constants omitted).

    Args:
        model: the network (its ReLU/LeakyReLU layers are counted by tracing with torch.fx).
        inputs: ``(batch, *features)`` data: gives the input shape and the Hanin-Rolnick estimate.
        input_dim: the input dimension when no inputs are given (MLPs: read from the first Linear).
        regions: a :class:`LinearRegions` result to compare with.

    Returns:
        A :class:`Capacity` result.

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
        >>> capacity(net).serra_upper
        7
    """
    if regions is not None and not isinstance(regions, LinearRegions):
        raise invalid_parameter("regions", _NAME, "None or a LinearRegions result (from linear_regions)", regions)
    if inputs is not None and input_dim is not None:
        raise invalid_parameter(
            "input_dim", _NAME, "None when inputs are given (their shape is the input's)", input_dim
        )
    example = _example_input(model, inputs, input_dim)
    n0 = int(example[0].numel())
    network = copy.deepcopy(model).to(torch.float64).eval()
    widths, piecewise, notes = _relu_widths(network, example.to(torch.float64))
    parameters = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    depth = max(len(widths), 1)
    slice_dim = None if regions is None else int(regions.dimension)
    steps = len(widths) * (n0 + 1) ** 2
    whole_space = piecewise and steps <= MAX_BOUND_STEPS
    if piecewise and not whole_space:
        notes.append(
            f"the whole-input-space region bounds were not computed: their exact dynamic programme takes about "
            f"{steps:.2g} big-integer steps for {n0} inputs and {len(widths)} ReLU layers (more than "
            f"{MAX_BOUND_STEPS:.0e}); the bounds on a slice are still exact"
        )
    hr_density = hr_error = hr_expected = None
    if inputs is not None and widths:
        hr_density, hr_error = _kac_rice_density(network, example.to(torch.float64))
        if slice_dim == 1:
            hr_expected = 1.0 + hr_density * float(regions.measure)
    return Capacity(
        parameters=parameters,
        trainable_parameters=trainable,
        input_dim=n0,
        widths=widths,
        piecewise_linear=piecewise,
        serra_upper=serra_upper_bound(n0, widths) if whole_space else None,
        montufar_lower=montufar_lower_bound(n0, widths) if whole_space else None,
        slice_dim=slice_dim,
        slice_serra_upper=serra_upper_bound(slice_dim, widths) if piecewise and slice_dim else None,
        slice_montufar_lower=montufar_lower_bound(slice_dim, widths) if piecewise and slice_dim else None,
        measured_regions=None if regions is None else int(regions.count),
        measured_density=None if regions is None else float(regions.density),
        hanin_rolnick_density=hr_density,
        hanin_rolnick_expected=hr_expected,
        hanin_rolnick_standard_error=hr_error,
        vc_upper_rate=parameters * depth * math.log2(max(parameters, 2)),
        vc_lower_rate=parameters * depth * math.log2(max(parameters / depth, 2)),
        vc_units_rate=float(parameters * sum(widths)),
        notes=notes,
    )


def _example_input(model: nn.Module, inputs, input_dim) -> torch.Tensor:
    reference = next(iter(model.parameters()), None)
    device = reference.device if reference is not None else torch.device("cpu")
    if inputs is not None:
        inputs = torch.as_tensor(inputs).detach()
        if inputs.ndim < 2 or len(inputs) == 0:
            raise DataError(f"capacity needs inputs shaped (batch, *features); got shape {tuple(inputs.shape)}.")
        return inputs[:256].to(device)
    if input_dim is None:
        first = next((m for m in model.modules() if isinstance(m, nn.Linear)), None)
        if first is None:
            raise invalid_parameter("inputs", _NAME, "given (or input_dim) for a model without a first Linear", None)
        input_dim = first.in_features
    check_int(input_dim, "input_dim", _NAME, minimum=1)
    return torch.zeros(1, input_dim, device=device)


def _relu_widths(network: nn.Module, example: torch.Tensor) -> tuple[list[int], bool, list[str]]:
    """Units per ReLU layer, whether the net is piecewise linear, and caveats, from a traced shape pass."""
    with torch.no_grad():
        first_forward(network, example[:1])  # a wrong input width: the shared DataError, not a ShapeProp error
    graph = traced(network, _NAME)
    ShapeProp(graph).propagate(example[:1])
    modules = dict(graph.named_modules())
    widths, notes, piecewise = [], [], True
    for node in graph.graph.nodes:
        module = modules.get(node.target) if node.op == "call_module" else None
        relu = isinstance(module, _RELU_MODULES) or (node.op == "call_function" and node.target in _RELU_FUNCTIONS)
        relu = relu or (node.op == "call_method" and node.target == "relu")
        if relu:
            widths.append(int(np.prod(node.meta["tensor_meta"].shape[1:])))
        elif isinstance(module, nn.MaxPool1d | nn.MaxPool2d):
            notes.append(f"max-pool '{node.target}' is not counted in the bounds (they assume ReLU layers only)")
        elif isinstance(module, _SMOOTH) or (node.op == "call_function" and node.target in (torch.tanh, F.gelu)):
            piecewise = False
        elif node.op == "call_function" and node.target in (operator.add, torch.add):
            if "residual additions" not in " ".join(notes):
                notes.append("residual additions present: the bounds assume a plain feed-forward chain")
    if not piecewise:
        notes.append("smooth activations: region bounds apply to piecewise-linear networks only")
    return widths, piecewise, notes


def _kac_rice_density(network: nn.Module, inputs: torch.Tensor, step: float = 1e-6) -> tuple[float, float]:
    """Sum over ReLU units of E[|grad z . u| delta(z)] over data points and random unit directions ``u``.

    ``delta`` is a Gaussian kernel with Silverman's bandwidth per unit; directional derivatives are
    central differences of the float64 pre-activations (exact for a piecewise-linear net unless a
    breakpoint lies within ``step``). Returns the density and a standard error over data points.
    """
    generator = torch.Generator().manual_seed(0)
    directions = torch.randn(inputs.shape, generator=generator, dtype=inputs.dtype).to(inputs.device)
    directions = directions / directions.flatten(1).norm(dim=1).reshape(-1, *[1] * (inputs.ndim - 1))
    graph = traced(network, _NAME)
    plus = _pre_activations(graph, inputs + step * directions)
    minus = _pre_activations(graph, inputs - step * directions)
    values = (plus + minus) / 2
    slopes = (plus - minus).abs() / (2 * step)
    count = values.shape[0]
    spread = values.std(dim=0).clamp_min(1e-12)
    bandwidth = 1.06 * spread * count ** (-0.2)
    kernel = torch.exp(-0.5 * (values / bandwidth) ** 2) / (bandwidth * math.sqrt(2 * math.pi))
    per_point = (kernel * slopes).sum(dim=1)  # breakpoints per unit length, one estimate per data point
    error = float(per_point.std() / math.sqrt(count)) if count > 1 else float("nan")
    return float(per_point.mean()), error


def _pre_activations(graph: fx.GraphModule, inputs: torch.Tensor) -> torch.Tensor:
    recorded: list[torch.Tensor] = []
    modules = dict(graph.named_modules())

    class Recorder(fx.Interpreter):
        def run_node(self, node):
            module = modules.get(node.target) if node.op == "call_module" else None
            relu = isinstance(module, _RELU_MODULES) or (node.op == "call_function" and node.target in _RELU_FUNCTIONS)
            if relu or (node.op == "call_method" and node.target == "relu"):
                recorded.append(self.env[node.args[0]].reshape(len(inputs), -1))
            return super().run_node(node)

    with torch.no_grad():
        Recorder(graph).run(inputs)
    return torch.cat(recorded, dim=1)
