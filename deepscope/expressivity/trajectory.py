"""Trajectory length through depth (Raghu et al., 2017): how much a network stretches a curve, layer by layer."""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from deepscope._outputs import OutputFn, check_output_fn, select_output
from deepscope._validation import check_int
from deepscope.errors import invalid_parameter
from deepscope.expressivity._tracing import traced
from deepscope.expressivity.layer_health import _ACTIVATION_FUNCTIONS, _ACTIVATION_MODULES
from deepscope.guard import current_guard_report
from deepscope.registry import analysis
from deepscope.results import Result

__all__ = ["TrajectoryLength", "trajectory_length"]

_NAME = "trajectory_length"


@dataclasses.dataclass(frozen=True)
class TrajectoryLength(Result):
    """Length of the image of a curve after the input, each activation layer and the output.

    Attributes:
        curve: "circle" (closed, through three inputs) or "segment" (between two inputs).
        points: number of points on the discretised curve.
        layers: per stage: ``layer`` name, ``depth`` (0 = input), ``length``, ``growth`` (ratio to
            the previous stage).
        growth_rate: ``exp`` of the least-squares slope of ``log length`` against depth: the mean
            factor by which each layer multiplies the length (> 1: exponential growth with depth).
        refinement_change: relative change of the output length when the curve is discretised with
            half as many points (a discretisation error estimate; the polyline underestimates).
    """

    curve: str
    points: int
    layers: list[dict[str, Any]]
    growth_rate: float
    refinement_change: float
    note: str = ""

    def rows(self) -> list[dict[str, Any]]:
        return [dict(layer) for layer in self.layers]

    def plot(self, ax=None):
        from deepscope._figures import new_figure

        figure, ax = new_figure(5.0, 3.2) if ax is None else (ax.figure, ax)
        ax.semilogy([r["depth"] for r in self.layers], [r["length"] for r in self.layers], "o-")
        ax.set_xlabel("depth (activation layers)")
        ax.set_ylabel("trajectory length")
        ax.set_title(f"growth x{self.growth_rate:.3g} per layer ({self.curve}, {self.points} points)", fontsize=9)
        return figure


@analysis(takes="model_inputs", family="expressivity", fixture="relu_mlp", example_kwargs={"points": 64})
def trajectory_length(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    curve: str = "circle",
    points: int = 2048,
    chunk_size: int = 1024,
    output_fn: OutputFn | None = None,
) -> TrajectoryLength:
    """Length of the image of a curve in input space after every activation layer.

    Raghu et al. (2017) show that for random networks the length of a trajectory's image grows
    exponentially with depth, at a rate set by the weight scale: a measure of expressivity that
    also shows how much a trained network folds its input space. The curve is a circle through
    three inputs (in the plane they span) or the segment between two inputs, discretised into
    ``points`` points; the length of layer ``l``'s image is ``sum_i |h_l(x_{i+1}) - h_l(x_i)|``.

    Args:
        model: the network (traced with torch.fx; stages are the outputs of its activations).
        inputs: ``(batch, *features)``: the first three (circle) or two (segment) define the curve.
        curve: "circle" or "segment". points: discretisation. chunk_size: forward batch size.
        output_fn: for a model returning a tuple or dict, picks the output whose trajectory is the last stage.

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> trajectory_length(net, torch.randn(3, 2), points=256).layers[0]["depth"]
        0
    """
    check_int(points, "points", _NAME, minimum=8)
    check_int(chunk_size, "chunk_size", _NAME, minimum=1)
    check_output_fn(output_fn, _NAME)
    if curve not in ("circle", "segment"):
        raise invalid_parameter("curve", _NAME, "'circle' or 'segment'", curve)
    inputs = torch.as_tensor(inputs).detach()
    needed = 3 if curve == "circle" else 2
    if inputs.ndim < 2 or len(inputs) < needed:
        raise invalid_parameter("inputs", _NAME, f"at least {needed} points shaped (batch, *features)", inputs)
    network = copy.deepcopy(model).eval()
    for module in network.modules():
        module._forward_hooks.clear()
        module._forward_pre_hooks.clear()
    reference = next(iter(network.parameters()), None)
    device = reference.device if reference is not None else torch.device("cpu")
    network = network.to(torch.float64)
    graph = traced(network, _NAME)
    path = _curve(inputs.to(device, torch.float64), curve, points)
    names, lengths = _stage_lengths(graph, path, chunk_size, curve == "circle", output_fn)
    _, coarse = _stage_lengths(graph, path[::2], chunk_size, curve == "circle", output_fn)
    refinement = abs(lengths[-1] - coarse[-1]) / lengths[-1] if lengths[-1] > 0 else 0.0
    depth = np.arange(len(lengths))
    positive = np.array(lengths) > 0
    slope = np.polyfit(depth[positive], np.log(np.array(lengths)[positive]), 1)[0] if positive.sum() > 1 else 0.0
    rows = [
        {
            "layer": name,
            "depth": d,
            "length": length,
            "growth": length / lengths[d - 1] if d and lengths[d - 1] else None,
        }
        for d, (name, length) in enumerate(zip(names, lengths))
    ]
    report = current_guard_report(model)
    return TrajectoryLength(
        curve=curve,
        points=points,
        layers=rows,
        growth_rate=float(math.exp(slope)),
        refinement_change=float(refinement),
        note=report.note if report is not None else "",
    )


def _curve(inputs: torch.Tensor, curve: str, points: int) -> torch.Tensor:
    a = inputs[0]
    if curve == "segment":
        t = torch.linspace(0.0, 1.0, points, dtype=torch.float64, device=inputs.device)
        return a[None] + t.reshape(-1, *[1] * a.ndim) * (inputs[1] - a)[None]
    # the circle through the three points, in the plane they span
    first, second = (inputs[1] - a).flatten(), (inputs[2] - a).flatten()
    e1 = first / first.norm()
    residual = second - (second @ e1) * e1
    if float(residual.norm()) <= 1e-9 * float(second.norm()):
        raise invalid_parameter("inputs", _NAME, "three points that are not collinear (for a circle)", "collinear")
    e2 = residual / residual.norm()
    p1 = torch.stack([first.norm(), torch.zeros((), dtype=first.dtype)])
    p2 = torch.stack([second @ e1, second @ e2])
    # circumcentre of (0, 0), p1, p2
    d = 2 * (p1[0] * p2[1] - p1[1] * p2[0])
    centre = torch.stack(
        [
            (p2[1] * (p1 @ p1) - p1[1] * (p2 @ p2)) / d,
            (p1[0] * (p2 @ p2) - p2[0] * (p1 @ p1)) / d,
        ]
    )
    radius = centre.norm()
    angles = torch.linspace(0.0, 2 * math.pi, points + 1, dtype=torch.float64, device=inputs.device)[:-1]
    coords = centre[None] + radius * torch.stack([angles.cos(), angles.sin()], dim=1)
    flat = a.flatten()[None] + coords[:, :1] * e1[None] + coords[:, 1:] * e2[None]
    return flat.reshape(points, *a.shape)


class _Stages(fx.Interpreter):
    def run_node(self, node: fx.Node) -> Any:
        result = super().run_node(node)
        modules = self.stage_modules
        is_stage = (node.op == "call_module" and isinstance(modules.get(node.target), _ACTIVATION_MODULES)) or (
            node.op == "call_function" and node.target in _ACTIVATION_FUNCTIONS
        )
        if is_stage and isinstance(result, torch.Tensor):
            self.stages.append((str(node.target) if node.op == "call_module" else node.name, result))
        return result


def _stage_lengths(
    graph: fx.GraphModule, path: torch.Tensor, chunk_size: int, closed: bool, output_fn: OutputFn | None = None
):
    names: list[str] = []
    totals: list[float] = []
    previous: list[torch.Tensor] | None = None
    first: list[torch.Tensor] | None = None
    for start in range(0, len(path), chunk_size):
        chunk = path[start : start + chunk_size]
        runner = _Stages(graph)
        runner.stage_modules = dict(graph.named_modules())
        runner.stages = []
        with torch.no_grad():
            output = select_output(runner.run(chunk), output_fn, _NAME)
        stages = [("input", chunk), *runner.stages, ("output", output)]
        flat = [value.reshape(len(chunk), -1) for _, value in stages]
        if not names:
            names = [name for name, _ in stages]
            totals = [0.0] * len(stages)
            first = [value[:1] for value in flat]
        for index, value in enumerate(flat):
            joined = value if previous is None else torch.cat([previous[index], value])
            totals[index] += float((joined[1:] - joined[:-1]).norm(dim=1).sum())
        previous = [value[-1:] for value in flat]
    if closed and previous is not None and first is not None:
        for index in range(len(totals)):
            totals[index] += float((first[index] - previous[index]).norm())
    return names, totals
