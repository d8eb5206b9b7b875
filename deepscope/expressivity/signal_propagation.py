"""Mean-field signal propagation: length and correlation maps, chi_1, depth scales, edge of chaos, and a check."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from scipy.optimize import brentq
from torch import nn

from deepscope._validation import check_float, check_int
from deepscope.errors import UnsupportedModelError, invalid_parameter
from deepscope.expressivity import _meanfield
from deepscope.expressivity.activations import critical_sigma_w, resolve_activation
from deepscope.registry import analysis
from deepscope.results import Result

__all__ = ["SignalPropagation", "signal_propagation", "initialization_verdict"]

_NAME = "signal_propagation"


@dataclasses.dataclass(frozen=True)
class SignalPropagation(Result):
    """Mean-field predictions for ``h = W phi(h_prev) + b`` and their check on a random network.

    Attributes:
        activation, sigma_w, sigma_b, depth, width: the set-up.
        q_star: fixed point of the variance map (``inf`` when it diverges).
        chi_1: ``sigma_w^2 E[phi'(sqrt(q*) z)^2]``: per-layer factor of squared gradient norms.
        c_star: fixed point of the correlation map (1 in the ordered phase).
        chi_c: slope of the correlation map at ``c_star``.
        xi_q, xi_c: depth scales ``-1 / ln chi`` of the variance and the correlation (``inf`` at
            criticality).
        phase: "ordered" (chi_1 < 1), "chaotic" (chi_1 > 1) or "critical" (|chi_1 - 1| < 0.01).
        gradient_verdict: "vanishing", "exploding" or "stable" over ``depth`` layers.
        predicted_q, predicted_c: per layer ``0..depth``, from the input's ``q0``, ``c0``.
        measured_q, measured_c (+ standard errors): averages over ``networks`` random networks.
        predicted_gradient_ratio, measured_gradient_ratio: ``|dL/dh^l|^2 / |dL/dh^depth|^2`` per layer.
        edge_sigma_b, edge_sigma_w: the edge-of-chaos curve ``chi_1 = 1`` in the (sigma_w, sigma_b) plane.
    """

    activation: str
    sigma_w: float
    sigma_b: float
    depth: int
    width: int
    q_star: float
    chi_1: float
    c_star: float
    chi_c: float
    xi_q: float
    xi_c: float
    phase: str
    gradient_verdict: str
    predicted_q: list[float]
    predicted_c: list[float]
    measured_q: list[float]
    measured_q_se: list[float]
    measured_c: list[float]
    measured_c_se: list[float]
    predicted_gradient_ratio: list[float]
    measured_gradient_ratio: list[float]
    edge_sigma_b: list[float]
    edge_sigma_w: list[float | None]
    networks: int
    note: str = ""

    def rows(self) -> list[dict[str, Any]]:
        """One row per layer: predicted and measured variance, correlation and gradient ratio."""
        return [
            {
                "layer": layer,
                "predicted_q": self.predicted_q[layer],
                "measured_q": self.measured_q[layer] if self.measured_q else None,
                "predicted_c": self.predicted_c[layer],
                "measured_c": self.measured_c[layer] if self.measured_c else None,
                "predicted_gradient_ratio": self.predicted_gradient_ratio[layer],
                "measured_gradient_ratio": self.measured_gradient_ratio[layer]
                if self.measured_gradient_ratio
                else None,
            }
            for layer in range(self.depth + 1)
        ]

    def summary(self) -> str:
        """One plain sentence."""
        return (
            f"{self.activation} with sigma_w={self.sigma_w:.3g}, sigma_b={self.sigma_b:.3g} is in the {self.phase} "
            f"phase (chi_1={self.chi_1:.3g}); over {self.depth} layers gradients are {self.gradient_verdict}."
        )

    def plot(self, ax=None):
        """Left: correlation through depth (predicted line, measured dots). Right: the edge of chaos."""
        from deepscope._figures import new_figure

        figure, axes = new_figure(8.0, 3.4, ncols=2)
        layers = np.arange(self.depth + 1)
        axes[0].plot(layers, self.predicted_c, color="C0", label="mean field")
        if self.measured_c:
            axes[0].errorbar(
                layers, self.measured_c, yerr=self.measured_c_se, fmt="o", ms=3, color="C1", label=f"width {self.width}"
            )
        axes[0].set_xlabel("layer")
        axes[0].set_ylabel("correlation c")
        axes[0].legend(fontsize=7)
        edge = [(b, w) for b, w in zip(self.edge_sigma_b, self.edge_sigma_w) if w is not None]
        if edge:
            axes[1].plot([w for _, w in edge], [b for b, _ in edge], color="black", label="edge of chaos")
        axes[1].plot([self.sigma_w], [self.sigma_b], "o", color="C3", label="this set-up")
        axes[1].set_xlabel("sigma_w")
        axes[1].set_ylabel("sigma_b")
        axes[1].set_title(f"{self.phase} (chi_1 = {self.chi_1:.3g})", fontsize=9)
        axes[1].legend(fontsize=7)
        return figure


def signal_propagation(
    activation: str | Callable = "tanh",
    sigma_w: float = 1.0,
    sigma_b: float = 0.0,
    depth: int = 20,
    *,
    width: int = 1000,
    q0: float | None = None,
    c0: float = 0.5,
    networks: int = 3,
    edge_points: int = 9,
    seed: int = 0,
) -> SignalPropagation:
    """Mean-field theory of signal propagation at random initialisation, checked on random networks.

    Poole et al. (2016): ``q^l = sigma_w^2 E[phi(sqrt(q^{l-1}) z)^2] + sigma_b^2`` converges to ``q*``;
    the correlation of two inputs follows the correlation map to ``c*``. Schoenholz et al. (2017):
    ``chi_1 = sigma_w^2 E[phi'(sqrt(q*) z)^2]`` sets the phase (ordered < 1 < chaotic), gradients scale
    like ``chi_1^depth`` and information survives about ``xi_c = -1 / ln chi_c`` layers; the
    edge of chaos is the curve ``chi_1 = 1`` (ReLU: ``sigma_w^2 = 2``; tanh at ``sigma_b = 0``:
    ``sigma_w = 1``). Expectations are Gauss-Hermite quadratures.

    The check draws ``networks`` fully-connected networks of the given width and depth
    (``W ~ N(0, sigma_w^2 / width)``, ``b ~ N(0, sigma_b^2)``, float64), propagates two inputs with
    variance ``q0`` and correlation ``c0``, and back-propagates a random vector to measure squared
    gradient norms per layer.

    Args:
        activation: a catalogue name ("relu", "tanh", ...) or a callable on tensors.
        sigma_w: weight scale (> 0). sigma_b: bias scale (>= 0). depth: number of layers.
        width: width of the random networks (0 skips the check). q0: input variance (default q*,
            or 1 when q* is 0 or infinite). c0: input correlation. networks: random networks averaged.
        edge_points: sigma_b values on the edge-of-chaos curve (0 to skip). seed: random seed.

    Example:
        >>> signal_propagation("relu", sigma_w=2 ** 0.5, depth=3, width=0, edge_points=0).phase
        'critical'
    """
    name, function = resolve_activation(activation, _NAME)
    sigma_w = check_float(sigma_w, "sigma_w", _NAME, minimum=0.0, strict_minimum=True)
    sigma_b = check_float(sigma_b, "sigma_b", _NAME, minimum=0.0)
    depth = check_int(depth, "depth", _NAME, minimum=1)
    width = check_int(width, "width", _NAME, minimum=0)
    networks = check_int(networks, "networks", _NAME, minimum=1)
    c0 = check_float(c0, "c0", _NAME, minimum=-1.0, maximum=1.0)
    check_int(edge_points, "edge_points", _NAME, minimum=0)

    q_star = _meanfield.fixed_point(function, sigma_w, sigma_b)
    if q0 is None:
        q0 = q_star if math.isfinite(q_star) and q_star > 1e-8 else 1.0
    q0 = check_float(q0, "q0", _NAME, minimum=0.0, strict_minimum=True)
    # slopes at q* (taken as q -> 0+ when the variance collapses, which matters for ReLU's kink);
    # where the variance diverges, at the input's q0
    q_for_slopes = max(q_star, 1e-12) if math.isfinite(q_star) else q0
    chi_1 = _meanfield.chi_1(function, q_for_slopes, sigma_w)
    if chi_1 <= 1 + 1e-9:  # c = 1 is the stable fixed point in the ordered phase and at criticality
        c_star, chi_c = 1.0, chi_1
    else:
        c_star = _correlation_fixed_point(function, q_for_slopes, sigma_w, sigma_b)
        chi_c = _meanfield.correlation_slope(function, q_for_slopes, c_star, sigma_w)
    step = 1e-4 * max(q_for_slopes, 1e-6)
    below = max(q_for_slopes - step, 0.0)
    chi_q = (
        _meanfield.length_map(function, q_for_slopes + step, sigma_w, sigma_b)
        - _meanfield.length_map(function, below, sigma_w, sigma_b)
    ) / (q_for_slopes + step - below)

    predicted_q, predicted_c = [q0], [c0]
    q, c = q0, c0
    slopes = []
    for _ in range(depth):
        slopes.append(_meanfield.chi_1(function, q, sigma_w))
        q, _, c = _meanfield.correlation_map(function, q, q, c, sigma_w, sigma_b)
        predicted_q.append(q)
        predicted_c.append(c)
    # |dL/dh^l|^2 = chi(q^l) |dL/dh^{l+1}|^2 with chi(q) = sigma_w^2 E[phi'(sqrt(q) z)^2]
    predicted_gradient = [1.0] * (depth + 1)
    for layer in reversed(range(depth)):
        predicted_gradient[layer] = predicted_gradient[layer + 1] * slopes[layer]

    measured = _simulate(function, sigma_w, sigma_b, depth, width, q0, c0, networks, seed) if width else None
    total = predicted_gradient[0]
    verdict = "vanishing" if total < 1e-2 else "exploding" if total > 1e2 else "stable"
    phase = "critical" if abs(chi_1 - 1) < 1e-2 else "ordered" if chi_1 < 1 else "chaotic"
    edge_b = [float(b) for b in np.linspace(0.0, 0.5, edge_points)] if edge_points else []
    edge_w = [critical_sigma_w(function, b) for b in edge_b]
    return SignalPropagation(
        activation=name,
        sigma_w=sigma_w,
        sigma_b=sigma_b,
        depth=depth,
        width=width,
        q_star=q_star,
        chi_1=chi_1,
        c_star=c_star,
        chi_c=chi_c,
        xi_q=_depth_scale(chi_q),
        xi_c=_depth_scale(chi_c),
        phase=phase,
        gradient_verdict=verdict,
        predicted_q=predicted_q,
        predicted_c=predicted_c,
        measured_q=measured["q"] if measured else [],
        measured_q_se=measured["q_se"] if measured else [],
        measured_c=measured["c"] if measured else [],
        measured_c_se=measured["c_se"] if measured else [],
        predicted_gradient_ratio=predicted_gradient,
        measured_gradient_ratio=measured["gradient"] if measured else [],
        edge_sigma_b=edge_b,
        edge_sigma_w=edge_w,
        networks=networks,
    )


def _depth_scale(chi: float) -> float:
    if chi <= 0:
        return 0.0
    if abs(math.log(chi)) < 1e-9:
        return math.inf
    return -1.0 / math.log(chi) if chi < 1 else 1.0 / math.log(chi)


def _correlation_fixed_point(function, q: float, sigma_w: float, sigma_b: float) -> float:
    """The fixed point ``c* < 1`` of the correlation map in the chaotic phase (Brent on ``m(c) - c``)."""

    def excess(c: float) -> float:
        return _meanfield.correlation_map(function, q, q, c, sigma_w, sigma_b)[2] - c

    low, high = -0.999, 1.0 - 1e-6
    if excess(low) * excess(high) > 0:
        return 1.0
    return float(brentq(excess, low, high, xtol=1e-10))


def _simulate(function, sigma_w, sigma_b, depth, width, q0, c0, networks, seed) -> dict[str, list[float]]:
    """Variance, correlation and squared gradient norms through ``networks`` random float64 MLPs."""
    qs, cs, gradients = [], [], []
    for network in range(networks):
        generator = torch.Generator().manual_seed(seed * 1000 + network)
        z1 = torch.randn(width, generator=generator, dtype=torch.float64)
        z2 = torch.randn(width, generator=generator, dtype=torch.float64)
        h = torch.stack([z1, c0 * z1 + math.sqrt(1 - c0 * c0) * z2]) * math.sqrt(q0)
        pre = [h]
        layer_seeds = torch.randint(0, 2**62, (depth,), generator=generator).tolist()
        for layer in range(depth):
            weight, bias = _layer(layer_seeds[layer], width, sigma_w, sigma_b)
            h = function(h) @ weight.T + bias
            pre.append(h)
        qs.append([float((p**2).mean()) for p in pre])
        cs.append([float((p[0] * p[1]).sum() / (p[0].norm() * p[1].norm())) for p in pre])
        grad = torch.randn(width, generator=generator, dtype=torch.float64)
        norms = [float(grad.square().sum())]
        for layer in reversed(range(depth)):
            weight, _ = _layer(layer_seeds[layer], width, sigma_w, sigma_b)
            grad = (grad @ weight) * _meanfield.derivative(function, pre[layer][0])
            norms.append(float(grad.square().sum()))
        norms = list(reversed(norms))
        gradients.append([n / norms[-1] for n in norms])
    q, c, g = np.array(qs), np.array(cs), np.array(gradients)
    error = math.sqrt(networks) if networks > 1 else float("nan")
    return {
        "q": q.mean(0).tolist(),
        "q_se": (q.std(0, ddof=1) / error if networks > 1 else np.full(depth + 1, np.nan)).tolist(),
        "c": c.mean(0).tolist(),
        "c_se": (c.std(0, ddof=1) / error if networks > 1 else np.full(depth + 1, np.nan)).tolist(),
        "gradient": np.exp(np.log(g).mean(0)).tolist(),
    }


def _layer(seed: int, width: int, sigma_w: float, sigma_b: float) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(width, width, generator=generator, dtype=torch.float64) * (sigma_w / math.sqrt(width))
    bias = torch.randn(width, generator=generator, dtype=torch.float64) * sigma_b
    return weight, bias


_MODULE_ACTIVATIONS = {
    nn.ReLU: "relu",
    nn.LeakyReLU: "leaky_relu",
    nn.ELU: "elu",
    nn.GELU: "gelu",
    nn.SiLU: "silu",
    nn.Tanh: "tanh",
    nn.Sigmoid: "sigmoid",
    nn.Softplus: "softplus",
}


@analysis(takes="model", family="expressivity", fixture="relu_mlp", example_kwargs={"width": 64, "edge_points": 0})
def initialization_verdict(model: nn.Module, *, width: int = 256, networks: int = 2, edge_points: int = 5):
    """Mean-field verdict for the model's own weight scale: is its initialisation ordered, critical or chaotic?

    ``sigma_w^2`` is the mean over Linear/Conv layers of ``fan_in * Var(W)``, ``sigma_b^2`` the mean
    ``Var(b)``; the activation is the model's first activation module; the depth is the number of
    weight layers. Pass the model at initialisation (or ``Problem.init_state`` loaded into it) to
    judge the initialisation, or a trained model to see where training moved it.

    Args:
        model: the network whose weight scale is judged.
        width: width of the random networks that check the mean-field prediction (>= 1: the
            verdict is always checked; :func:`signal_propagation` takes 0 to skip the check).
        networks: random networks averaged. edge_points: points of the edge-of-chaos curve.

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> initialization_verdict(net, width=32, edge_points=0).depth
        2
    """
    owner = "initialization_verdict"  # errors name the function the user called, not signal_propagation
    width = check_int(width, "width", owner, minimum=1)
    networks = check_int(networks, "networks", owner, minimum=1)
    edge_points = check_int(edge_points, "edge_points", owner, minimum=0)
    if not isinstance(model, nn.Module):
        raise invalid_parameter("model", owner, "a torch.nn.Module", model)
    layers = [m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv1d | nn.Conv2d)]
    activation = next((_MODULE_ACTIVATIONS[type(m)] for m in model.modules() if type(m) in _MODULE_ACTIVATIONS), None)
    outside = _outside_the_theory(model)
    if outside:
        raise UnsupportedModelError(
            f"{owner} applies to feed-forward chains of Linear/Conv layers with one activation (Poole et al. 2016; "
            f"Schoenholz et al. 2017); this model has {outside}, for which that mean-field recursion does not hold."
        )
    if not layers or activation is None:
        raise UnsupportedModelError(
            "initialization_verdict needs Linear/Conv layers and one of the catalogue's activation modules "
            f"({', '.join(sorted(set(_MODULE_ACTIVATIONS.values())))})."
        )
    scales, biases = [], []
    for layer in layers:
        weight = layer.weight.detach().double()
        fan_in = weight[0].numel()
        scales.append(fan_in * float(weight.var()) if weight.numel() > 1 else float(weight.square().sum()))
        biases.append(
            float(layer.bias.detach().double().var()) if layer.bias is not None and layer.bias.numel() > 1 else 0.0
        )
    return signal_propagation(
        activation,
        math.sqrt(max(float(np.mean(scales)), 1e-12)),
        math.sqrt(float(np.mean(biases))),
        len(layers),
        width=width,
        networks=networks,
        edge_points=edge_points,
    )


def _outside_the_theory(model: nn.Module) -> str:
    """What puts ``model`` outside the chain mean-field theory: attention, embeddings, LayerNorm, mixed activations."""
    found: list[str] = []
    kinds = {type(m).__name__ for m in model.modules()}
    if any(isinstance(m, nn.Embedding) for m in model.modules()):
        found.append("embeddings")
    if any(isinstance(m, nn.LayerNorm) for m in model.modules()) or any("LayerNorm" in k for k in kinds):
        found.append("LayerNorm")
    if any(isinstance(m, nn.MultiheadAttention) for m in model.modules()) or any("Attention" in k for k in kinds):
        found.append("attention")
    activations = sorted({_MODULE_ACTIVATIONS[type(m)] for m in model.modules() if type(m) in _MODULE_ACTIVATIONS})
    foreign = sorted(k for k in kinds if k.endswith("Activation") or k in ("NewGELUActivation", "GELUActivation"))
    if len(activations) + len(foreign) > 1:
        found.append("several activations (" + ", ".join(activations + foreign) + ")")
    return ", ".join(found[:-1]) + (" and " if len(found) > 1 else "") + (found[-1] if found else "")
