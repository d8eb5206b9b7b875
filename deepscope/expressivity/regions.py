"""Exact linear regions of a piecewise-linear network on a segment or a plane in input space."""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any

import numpy as np
import torch
from torch import nn

from deepscope._validation import check_float, check_int
from deepscope.errors import invalid_parameter
from deepscope.expressivity import _geometry as geometry
from deepscope.expressivity import _pwl
from deepscope.guard import current_guard_report
from deepscope.registry import analysis
from deepscope.results import Result, to_jsonable

__all__ = ["LinearRegions", "linear_regions", "region_domain"]

_NAME = "linear_regions"


@dataclasses.dataclass(frozen=True)
class LinearRegions(Result):
    """The exact partition of a segment (``dimension=1``) or a polygon (``dimension=2``).

    Coordinates are Euclidean coordinates in input space along an orthonormal basis of the plane
    (for a segment: ``t`` in [0, 1] from the first endpoint to the second).

    Attributes:
        dimension: 1 (segment) or 2 (plane).
        count: number of regions (pieces where the network is affine).
        measure: length of the segment or area of the polygon, in input-space units.
        density: regions per unit length or area.
        bounds: ``(t0, t1)`` or ``(u0, u1, v0, v1)``: the domain in plane coordinates.
        vertices: ``(count, max_vertices, dimension)``, padded with NaN.
        vertex_counts: ``(count,)`` valid vertices of each region.
        patterns: ``(count, units)`` activation pattern, int8 (ReLU: 0/1; max-pool: argmax in window).
        output_maps: ``(count, dimension + 1, outputs)``: on region r the network output is
            ``coords @ output_maps[r, :-1] + output_maps[r, -1]``.
        predicted_class: ``(count,)`` argmax of the output inside each region.
        decision_boundary: 2-D: segments ``(S, 2, 2)``; 1-D: points ``(S,)`` where the top two
            outputs tie.
        origin, basis: the plane in input space, ``x = origin + coords @ basis``.
        points, point_classes: the given inputs projected on the plane and the model's classes.
        layers: per nonlinearity: name, kind, units, regions after it.
        max_abs_error: largest |network - affine map| at the interior points of up to ``check_regions``
            random regions (float64 forward pass).
        note: the model guard's note (train-mode modules run in eval semantics), or "".
    """

    dimension: int
    count: int
    measure: float
    density: float
    bounds: tuple[float, ...]
    vertices: np.ndarray
    vertex_counts: np.ndarray
    patterns: np.ndarray
    output_maps: np.ndarray
    predicted_class: np.ndarray
    decision_boundary: np.ndarray
    origin: np.ndarray
    basis: np.ndarray
    points: np.ndarray
    point_classes: np.ndarray
    layers: list[dict[str, Any]]
    max_abs_error: float
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """All fields as plain values; each region's pattern as one hex string (``patterns_dtype`` bytes per unit)."""
        fields = {name: getattr(self, name) for name in self.__dataclass_fields__ if name != "patterns"}
        data = to_jsonable(fields)
        data["patterns"] = [row.tobytes().hex() for row in self.patterns]
        data["patterns_dtype"] = str(self.patterns.dtype)
        return data

    def rows(self) -> list[dict[str, Any]]:
        """One row per nonlinearity: how many regions exist after it."""
        return [dict(layer) for layer in self.layers]

    def region_of(self, coords: np.ndarray) -> np.ndarray:
        """Index of the region containing each point ``coords (n, dimension)`` (-1 if outside)."""
        coords = np.asarray(coords, dtype=np.float64).reshape(-1, self.dimension)
        found = np.full(len(coords), -1)
        if self.dimension == 1:
            start, end = self.vertices[:, 0, 0], self.vertices[:, 1, 0]
            inside = (coords[:, :1] >= start[None]) & (coords[:, :1] <= end[None])
        else:
            inside = np.ones((len(coords), self.count), dtype=bool)
            width = self.vertices.shape[1]
            sign = np.sign(geometry.signed_areas(geometry.Pieces(self.vertices, self.vertex_counts)))
            for m in range(width):
                a = self.vertices[:, m]
                b = self.vertices[np.arange(self.count), (m + 1) % self.vertex_counts]
                cross = (b[:, 0] - a[:, 0])[None] * (coords[:, 1:2] - a[None, :, 1]) - (b[:, 1] - a[:, 1])[None] * (
                    coords[:, :1] - a[None, :, 0]
                )
                ok = (cross * sign[None] >= -1e-12) | (m >= self.vertex_counts)[None]
                inside &= ok
        hit = inside.any(axis=1)
        found[hit] = inside[hit].argmax(axis=1)
        return found

    def to_input(self, coords: np.ndarray) -> torch.Tensor:
        """Points of input space for plane coordinates ``coords (n, dimension)``."""
        coords = torch.as_tensor(np.asarray(coords, dtype=np.float64)).reshape(-1, self.dimension)
        basis = torch.as_tensor(self.basis).reshape(self.dimension, -1)
        flat = torch.as_tensor(self.origin).reshape(1, -1) + coords @ basis
        return flat.reshape(-1, *self.origin.shape)

    def plot(self, ax=None):
        """Regions in colour, the decision boundary in black and the projected inputs as dots."""
        from matplotlib.collections import LineCollection, PolyCollection

        from deepscope._figures import new_figure

        figure, ax = new_figure(5.0, 4.2) if ax is None else (ax.figure, ax)
        palette = np.array([[0.55, 0.71, 0.86], [0.98, 0.75, 0.52], [0.63, 0.83, 0.6], [0.87, 0.63, 0.82]])
        rng = np.random.default_rng(0)
        colours = palette[rng.integers(0, len(palette), self.count)] * rng.uniform(0.8, 1.0, (self.count, 1))
        if self.dimension == 2:
            polygons = [self.vertices[r, : self.vertex_counts[r]] for r in range(self.count)]
            # many polygons are drawn as an embedded image so the SVG stays small (no external file)
            ax.add_collection(
                PolyCollection(
                    polygons, facecolors=colours, edgecolors="white", linewidths=0.2, rasterized=self.count > 2000
                )
            )
            if len(self.decision_boundary):
                ax.add_collection(LineCollection(self.decision_boundary, colors="black", linewidths=1.4))
            if len(self.points):
                ax.scatter(
                    self.points[:, 0],
                    self.points[:, 1],
                    c=self.point_classes,
                    cmap="tab10",
                    s=14,
                    edgecolors="black",
                    linewidths=0.4,
                    vmin=0,
                    vmax=9,
                    zorder=3,
                )
            ax.set_xlim(self.bounds[0], self.bounds[1])
            ax.set_ylim(self.bounds[2], self.bounds[3])
            ax.set_aspect("equal")
            ax.set_xlabel("u (input-space units)")
            ax.set_ylabel("v")
        else:
            t = np.linspace(self.bounds[0], self.bounds[1], 400)
            region = self.region_of(t[:, None])
            outputs = np.einsum("n,nc->nc", t, self.output_maps[region, 0]) + self.output_maps[region, 1]
            ax.plot(t, outputs, linewidth=1.0)
            for start in self.vertices[1:, 0, 0]:
                ax.axvline(start, color="grey", linewidth=0.3)
            for point in self.decision_boundary:
                ax.axvline(point, color="black", linewidth=1.2)
            ax.set_xlabel("t along the segment")
            ax.set_ylabel("network output")
        ax.set_title(f"{self.count} linear regions (density {self.density:.3g})")
        return figure


@analysis(takes="model_inputs", family="expressivity", fixture="relu_mlp", example_kwargs={"max_regions": 2000})
def linear_regions(
    model: nn.Module,
    inputs: torch.Tensor | None = None,
    *,
    line: Any = None,
    plane: Any = None,
    bounds: tuple[float, ...] | None = None,
    margin: float = 0.25,
    max_regions: int = 50_000,
    tolerance: float = 1e-9,
    check_regions: int = 2048,
    progress: bool = False,
) -> LinearRegions:
    """The exact partition of a segment or a plane of input space into the pieces where ``model`` is affine.

    A ReLU network is continuous and piecewise affine (Montúfar et al., 2014); restricted to a
    plane, its pieces are convex polygons. The partition is built layer by layer, exactly, in
    float64 (as in SplineCam, Humayun et al., 2023, but for any torch.fx-traceable graph, residual
    additions included): each pre-activation is an affine function of the two plane coordinates on
    a piece, and the piece is cut by its zero line (ReLU) or into argmax cells (max-pool).

    Args:
        model: a piecewise-linear network: Linear, Conv1d/2d, ReLU, LeakyReLU, MaxPool1d/2d,
            eval BatchNorm, Flatten/reshape, average pooling, residual additions, torch.cat of branches.
        inputs: ``(batch, *features)`` data; the default plane passes through the first three
            that are not collinear, and the inputs are drawn projected on the plane.
        line: two points ``(2, *features)``: the segment to partition (instead of a plane).
        plane: three points ``(3, *features)``: the plane through them.
        bounds: the domain in plane coordinates, ``(t0, t1)`` or ``(u0, u1, v0, v1)``. Default:
            ``(0, 1)`` for a line; the bounding square of the three points, enlarged by ``margin``.
        margin: relative enlargement of the default square.
        max_regions: stop with an error when the partition would exceed this many pieces.
        tolerance: relative distance below which a vertex counts as on a cutting line.
        check_regions: how many regions (drawn at random) to check against a direct forward pass:
            ``max_abs_error`` is the largest |network - affine map| at their interior points.
        progress: show a tqdm progress bar.

    Returns:
        A :class:`LinearRegions` with the regions, their patterns and affine maps, the decision
        boundary and the region density.

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2))
        >>> linear_regions(net, plane=torch.eye(3)[:, :2]).count >= 1
        True
    """
    check_int(max_regions, "max_regions", _NAME, minimum=1)
    check_float(margin, "margin", _NAME, minimum=0.0)
    check_int(check_regions, "check_regions", _NAME, minimum=1)
    check_float(tolerance, "tolerance", _NAME, minimum=0.0, strict_minimum=True)
    if line is not None and plane is not None:
        raise invalid_parameter("line", _NAME, "None when a plane is given", "both line and plane")
    reference = next(iter(model.parameters()), None)
    device = reference.device if reference is not None else torch.device("cpu")
    inputs = None if inputs is None else torch.as_tensor(inputs).detach().to(device, torch.float64)
    origin, basis, default_bounds = region_domain(inputs, line, plane, margin)
    bounds = _check_bounds(bounds, default_bounds, basis.shape[0])
    dimension = basis.shape[0]
    diameter = math.dist(bounds[0::2], bounds[1::2])
    tol = tolerance * diameter

    network = copy.deepcopy(model).to(device=device, dtype=torch.float64).eval()
    for module in network.modules():
        for hooks in (module._forward_hooks, module._forward_pre_hooks):
            hooks.clear()
    graph = _pwl.trace(network)
    start = torch.cat([basis, origin[None]]).to(device)[None]
    state = _pwl.PartitionState(geometry.initial_pieces(bounds), tol, max_regions)
    output = _pwl.propagate(graph, start, state, progress=progress)
    maps = output.detach().cpu().numpy()
    pieces = state.pieces

    interior = geometry.interior_points(pieces)
    affine_values = np.einsum("pk,pkc->pc", interior, maps[:, :-1]) + maps[:, -1]
    checked = np.random.default_rng(0).permutation(len(pieces))[:check_regions]
    with torch.no_grad():
        points_in = torch.as_tensor(interior[checked], device=device) @ basis.reshape(dimension, -1)
        points_in = (origin.reshape(1, -1) + points_in).reshape(-1, *origin.shape)
        network_values = torch.cat([network(chunk).reshape(len(chunk), -1) for chunk in points_in.split(1024)])
    max_error = float(np.abs(network_values.cpu().numpy() - affine_values[checked]).max())
    boundary = _decision_boundary(pieces, maps, tol)
    classes = _classes(affine_values)
    points, point_classes = _project(network, inputs, origin, basis)
    report = current_guard_report(model)
    measure = float(np.prod(np.subtract(bounds[1::2], bounds[0::2])))
    if dimension == 1:
        measure *= float(basis.norm())
    count = len(pieces)
    patterns = np.concatenate(state.patterns, axis=1) if state.patterns else np.zeros((count, 0), np.int8)
    return LinearRegions(
        dimension=dimension,
        count=count,
        measure=measure,
        density=count / measure if measure > 0 else float("nan"),
        bounds=tuple(float(b) for b in bounds),
        vertices=pieces.vertices,
        vertex_counts=pieces.counts,
        patterns=patterns,
        output_maps=maps,
        predicted_class=classes,
        decision_boundary=boundary,
        origin=origin.cpu().numpy(),
        basis=basis.cpu().numpy(),
        points=points,
        point_classes=point_classes,
        layers=state.layers,
        max_abs_error=max_error,
        note=report.note if report is not None else "",
    )


def _classes(outputs: np.ndarray) -> np.ndarray:
    return (outputs[:, 0] > 0).astype(np.int64) if outputs.shape[1] == 1 else outputs.argmax(axis=1)


def region_domain(
    inputs: torch.Tensor | None, line: Any, plane: Any, margin: float
) -> tuple[torch.Tensor, torch.Tensor, tuple[float, ...]]:
    """Origin, orthonormal basis ``(k, *features)`` and default bounds of the domain ``linear_regions`` partitions."""
    if line is not None:
        points = _points(line, 2, "line", inputs)
        direction = points[1] - points[0]
        if float(direction.norm()) == 0.0:
            raise invalid_parameter("line", _NAME, "two distinct points", line)
        return points[0], direction[None], (0.0, 1.0)
    if plane is None:
        if inputs is None or len(inputs) < 3:
            raise invalid_parameter("inputs", _NAME, "at least three points (or pass line= or plane=)", inputs)
        plane = _first_non_collinear(inputs)
    points = _points(plane, 3, "plane", inputs)
    first = (points[1] - points[0]).flatten()
    second = (points[2] - points[0]).flatten()
    length = first.norm()
    if float(length) == 0.0:
        raise invalid_parameter("plane", _NAME, "three points that are not collinear", "two equal points")
    e1 = first / length
    residual = second - (second @ e1) * e1
    if float(residual.norm()) <= 1e-9 * max(float(length), float(second.norm())):
        raise invalid_parameter("plane", _NAME, "three points that are not collinear", "collinear points")
    e2 = residual / residual.norm()
    corners = np.array([[0.0, 0.0], [float(length), 0.0], [float(second @ e1), float(second @ e2)]])
    low, high = corners.min(axis=0), corners.max(axis=0)
    centre, half = (low + high) / 2, (high - low).max() / 2 * (1 + margin)
    bounds = (centre[0] - half, centre[0] + half, centre[1] - half, centre[1] + half)
    return points[0], torch.stack([e1, e2]).reshape(2, *points.shape[1:]), bounds


def _points(value, count: int, name: str, inputs) -> torch.Tensor:
    try:
        points = torch.stack([torch.as_tensor(p, dtype=torch.float64) for p in value])
    except (TypeError, RuntimeError) as error:
        raise invalid_parameter(name, _NAME, f"{count} points of the same shape", value) from error
    if len(points) != count:
        raise invalid_parameter(name, _NAME, f"{count} points", value)
    if inputs is not None and tuple(points.shape[1:]) != tuple(inputs.shape[1:]):
        raise invalid_parameter(name, _NAME, f"points shaped like the inputs {tuple(inputs.shape[1:])}", points)
    device = inputs.device if inputs is not None else points.device
    return points.to(device)


def _first_non_collinear(inputs: torch.Tensor) -> torch.Tensor:
    flat = inputs.flatten(1)
    first = flat[0]
    for j in range(1, len(flat)):
        if float((flat[j] - first).norm()) > 0:
            a = flat[j] - first
            for m in range(j + 1, len(flat)):
                b = flat[m] - first
                residual = b - (b @ a) / (a @ a) * a
                if float(residual.norm()) > 1e-9 * float(b.norm()):
                    return inputs[[0, j, m]]
            break
    raise invalid_parameter("inputs", _NAME, "three points that are not collinear", "collinear inputs")


def _check_bounds(bounds, default, dimension: int) -> tuple[float, ...]:
    if bounds is None:
        return tuple(float(b) for b in default)
    values = tuple(float(b) for b in bounds)
    ok = len(values) == 2 * dimension and all(math.isfinite(v) for v in values)
    if not ok or any(values[2 * i] >= values[2 * i + 1] for i in range(dimension)):
        raise invalid_parameter("bounds", _NAME, f"{2 * dimension} finite numbers (low, high) per axis", bounds)
    return values


def _decision_boundary(pieces: geometry.Pieces, maps: np.ndarray, tol: float) -> np.ndarray:
    """Where the two largest outputs tie: segments (2-D) or points (1-D)."""
    functions = maps.transpose(0, 2, 1)  # (P, outputs, k + 1)
    if functions.shape[1] == 1:
        functions = np.concatenate([np.zeros_like(functions), functions], axis=1)
    cells, source, winner = geometry.partition_by_argmax(pieces, functions, tol)
    k = pieces.dim
    if k == 1:
        order = np.argsort(cells.vertices[:, 0, 0])
        starts, ends, labels = cells.vertices[order, 0, 0], cells.vertices[order, 1, 0], winner[order]
        change = (labels[1:] != labels[:-1]) & (np.abs(starts[1:] - ends[:-1]) <= 10 * tol + 1e-12)
        return ends[:-1][change]
    f = functions[source]
    # a cell can hold a tied edge only where some class comes within the tie scale of the winner; with
    # c its centre and R its radius, |best - f_j| >= |best(c) - f_j(c)| - (|∇best| + |∇f_j|) R at every
    # corner, and the scale is at most 1e-7 (1 + max_o |f_o(c)| + |∇f_o| R): the other cells are skipped
    centre, radius = geometry.discs(cells)
    at_centre = np.einsum("ck,cok->co", centre, f[:, :, :k]) + f[:, :, k]
    slopes = np.sqrt(np.einsum("cok,cok->co", f[:, :, :k], f[:, :, :k]))
    rows = np.arange(len(f))
    spread = (slopes + slopes[rows, winner][:, None]) * radius[:, None]
    gap = np.abs(at_centre[rows, winner][:, None] - at_centre) - spread
    largest = 1e-7 * (1.0 + (np.abs(at_centre) + slopes * radius[:, None]).max(axis=1))
    near = (gap <= (largest * (1 + 1e-6) + 1e-12)[:, None]) & (np.arange(f.shape[1])[None, :] > winner[:, None])
    keep = np.flatnonzero(near.any(axis=1))
    vertices, counts, f, winner = np.nan_to_num(cells.vertices[keep]), cells.counts[keep], f[keep], winner[keep]
    outputs = np.einsum("cmk,cok->cmo", vertices, f[:, :, :k]) + f[:, None, :, k]  # (cells, vertices, outputs)
    best = np.take_along_axis(outputs, winner[:, None, None], axis=2)[:, :, 0]
    scale = 1e-7 * (1.0 + np.abs(outputs).max(axis=(1, 2)))
    # class j ties with the cell's winner at a corner; an edge whose two corners tie with the same j
    # lies on the w = j line (robust at triple points, where "the runner-up" is ambiguous)
    tied = np.abs(best[:, :, None] - outputs) <= scale[:, None, None]  # (cells, corners, classes)
    tied &= np.arange(outputs.shape[2])[None, None, :] > winner[:, None, None]  # each edge once: j > w
    index = np.arange(vertices.shape[1])[None, :]
    following = (index + 1) % counts[:, None]
    next_tied = np.take_along_axis(tied, following[:, :, None], axis=1)
    edge = (index < counts[:, None]) & (tied & next_tied).any(axis=2)
    cell, corner = np.nonzero(edge)
    ends = np.take_along_axis(vertices, following[:, :, None], axis=1)
    segments = np.stack([vertices[cell, corner], ends[cell, corner]], axis=1)
    return np.array(segments, dtype=np.float64).reshape(-1, 2, 2)


def _project(network: nn.Module, inputs, origin: torch.Tensor, basis: torch.Tensor):
    if inputs is None:
        return np.zeros((0, basis.shape[0])), np.zeros(0, dtype=np.int64)
    flat = (inputs - origin).reshape(len(inputs), -1)
    coords = flat @ basis.reshape(basis.shape[0], -1).T
    if basis.shape[0] == 1:
        coords = coords / (basis.reshape(-1) @ basis.reshape(-1))
    with torch.no_grad():
        outputs = torch.cat([network(chunk).reshape(len(chunk), -1) for chunk in inputs.split(1024)]).cpu().numpy()
    return coords.cpu().numpy(), _classes(outputs)
