"""Exact linear regions: oracles (sawtooth, hyperplane arrangements, breakpoints), sampling, bad input."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from deepscope.errors import DeepscopeError, InvalidParameterError, UnsupportedModelError
from deepscope.expressivity import linear_regions
from deepscope.testing import make_fixture

PLANE_2D = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # plane coordinates = input coordinates


def sawtooth(depth: int) -> nn.Sequential:
    """Telgarsky (2016): the tent map t(x) = 2 relu(x) - 4 relu(x - 1/2), composed ``depth`` times."""
    layers = []
    for layer in range(depth):
        linear = nn.Linear(1 if layer == 0 else 2, 2)
        with torch.no_grad():
            linear.weight.copy_(torch.tensor([[1.0], [1.0]]) if layer == 0 else torch.tensor([[2.0, -4.0]] * 2))
            linear.bias.copy_(torch.tensor([0.0, -0.5]))
        layers += [linear, nn.ReLU()]
    head = nn.Linear(2, 1)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[2.0, -4.0]]))
        head.bias.zero_()
    return nn.Sequential(*layers, head)


@pytest.mark.parametrize("depth", [1, 2, 3, 5, 8])
def test_sawtooth_has_two_to_the_depth_pieces(depth):
    result = linear_regions(sawtooth(depth), line=torch.tensor([[0.0], [1.0]]))
    assert result.count == 2**depth
    assert result.density == pytest.approx(2**depth)  # segment of length 1
    # the pieces tile [0, 1] with equal length 2^-depth (breakpoints at k / 2^depth)
    np.testing.assert_allclose(np.diff(result.vertices[:, :, 0], axis=1)[:, 0], 2.0**-depth, atol=1e-12)


def test_one_hidden_layer_on_a_segment_has_breakpoints_plus_one_pieces():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(3, 40), nn.ReLU(), nn.Linear(40, 2))
    a, b = torch.randn(3), torch.randn(3)
    w, c = net[0].weight.detach().double(), net[0].bias.detach().double()
    # unit j is zero at t = -(w_j a + c_j) / (w_j (b - a))
    roots = -(w @ a.double() + c) / (w @ (b - a).double())
    expected = int(((roots > 0) & (roots < 1)).sum()) + 1
    result = linear_regions(net, line=torch.stack([a, b]))
    assert result.count == expected
    assert result.measure == pytest.approx(float((b - a).norm()))
    starts = np.sort(result.vertices[:, 0, 0])[1:]
    np.testing.assert_allclose(starts, np.sort(roots[(roots > 0) & (roots < 1)].numpy()), atol=1e-12)


def test_line_arrangement_in_general_position_gives_the_zaslavsky_count():
    # n lines in general position cut the plane into 1 + n + C(n, 2) regions; the box holds all crossings
    torch.manual_seed(2)
    n = 12
    net = nn.Sequential(nn.Linear(2, n), nn.ReLU(), nn.Linear(n, 3))
    w, c = net[0].weight.detach().double().numpy(), net[0].bias.detach().double().numpy()
    crossings = [np.linalg.solve(w[[i, j]], -c[[i, j]]) for i in range(n) for j in range(i + 1, n)]
    reach = float(np.abs(crossings).max()) * 1.5 + 1.0
    result = linear_regions(net, plane=PLANE_2D, bounds=(-reach, reach, -reach, reach))
    assert result.count == 1 + n + math.comb(n, 2)
    assert result.measure == pytest.approx((2 * reach) ** 2)
    assert result.max_abs_error < 1e-12


class Residual(nn.Module):
    """A residual ReLU block: traced with torch.fx (not a Sequential)."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(2, 6)
        self.block = nn.Sequential(nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 6))
        self.out = nn.Linear(6, 3)

    def forward(self, x):
        h = torch.relu(self.inp(x))
        h = nn.functional.relu(h + self.block(h))
        return self.out(h.view(h.size(0), -1))


def _relu_patterns(model: nn.Module, points: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Activation pattern and smallest |pre-activation| at each point, from hooks on the float64 model."""
    pre = []
    model = model.double().eval()
    if isinstance(model, Residual):
        h0 = model.inp(points)
        h = torch.relu(h0)
        inner = model.block[0](h)
        h1 = h + model.block(h)
        pre = [h0, inner, h1]
    else:
        x = points
        for layer in model:
            if isinstance(layer, nn.ReLU):
                pre.append(x)
            x = layer(x)
    values = torch.cat(pre, dim=1).detach()
    return (values > 0).numpy(), values.abs().min(dim=1).values.numpy()


@pytest.mark.parametrize("kind", ["mlp", "residual"])
def test_sampled_patterns_match_their_regions_and_affine_maps_match_the_network(kind):
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))
    if kind == "residual":
        model = Residual()
    result = linear_regions(model, plane=PLANE_2D, bounds=(-3, 3, -3, 3))
    grid = np.stack(np.meshgrid(np.linspace(-2.99, 2.99, 61), np.linspace(-2.99, 2.99, 61)), -1).reshape(-1, 2)
    patterns, closest = _relu_patterns(model, torch.as_tensor(grid))
    clear = closest > 1e-6  # points on a cutting line are ambiguous; skip them
    region = result.region_of(grid)
    assert (region >= 0).all()
    np.testing.assert_array_equal(result.patterns[region[clear]], patterns[clear].astype(np.int8))
    sampled = {p.tobytes() for p in patterns[clear].astype(np.int8)}
    assert sampled <= {p.tobytes() for p in result.patterns}
    # the affine map of each region equals the network at random convex combinations of its vertices
    rng = np.random.default_rng(0)
    for r in range(result.count):
        corners = result.vertices[r, : result.vertex_counts[r]]
        weights = rng.dirichlet(np.ones(len(corners)), size=3)
        inside = weights @ corners
        expected = model(torch.as_tensor(inside)).detach().numpy()
        affine = inside @ result.output_maps[r, :-1] + result.output_maps[r, -1]
        np.testing.assert_allclose(affine, expected, atol=1e-10)  # float64 round-off only


def test_regions_tile_the_domain_without_overlap():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(2, 10), nn.ReLU(), nn.Linear(10, 10), nn.ReLU(), nn.Linear(10, 2))
    result = linear_regions(model, plane=PLANE_2D, bounds=(-2, 2, -2, 2))
    from deepscope.expressivity._geometry import Pieces, measures

    areas = measures(Pieces(result.vertices, result.vertex_counts))
    assert areas.sum() == pytest.approx(16.0, rel=1e-9)  # the pieces partition the 4 x 4 square
    assert len({p.tobytes() for p in result.patterns}) == result.count  # distinct patterns per region


def test_cnn_with_batchnorm_and_max_pool_is_exact():
    fixture = make_fixture("cnn")
    result = linear_regions(fixture.model, fixture.inputs, bounds=(0, 3, 0, 3), check_regions=300)
    assert result.count > 20
    assert [layer["kind"] for layer in result.layers] == ["relu", "max_pool", "relu"]
    assert result.max_abs_error < 1e-9  # float64 round-off through 3 layers
    assert "train mode" in result.note
    assert fixture.model.training  # the guard restored the caller's flags


def test_conv1d_with_max_pool_is_exact():
    fixture = make_fixture("sequence")
    result = linear_regions(fixture.model, line=fixture.inputs[:2])
    assert result.dimension == 1 and result.count > 1
    assert result.max_abs_error < 1e-10


def test_decision_boundary_of_a_linear_classifier_is_one_segment():
    model = nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 1.0], [0.0, 0.0]]))
        model.bias.copy_(torch.tensor([-0.5, 0.0]))
    result = linear_regions(model, plane=PLANE_2D, bounds=(-1, 1, -1, 1))
    assert result.count == 1
    assert len(result.decision_boundary) == 1
    segment = result.decision_boundary[0]
    np.testing.assert_allclose(segment.sum(axis=1), [0.5, 0.5], atol=1e-12)  # on the line x + y = 1/2
    line = linear_regions(model, line=torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
    np.testing.assert_allclose(line.decision_boundary, [0.25], atol=1e-12)


def test_default_plane_passes_through_the_first_three_inputs_and_plots():
    fixture = make_fixture("relu_mlp")
    result = linear_regions(fixture.model, fixture.inputs)
    np.testing.assert_allclose(result.points[0], [0.0, 0.0], atol=1e-12)
    assert result.points[1, 1] == pytest.approx(0.0, abs=1e-12)
    assert result.plot() is not None
    assert linear_regions(fixture.model, line=fixture.inputs[:2]).plot() is not None
    assert result.rows()[-1]["regions"] == result.count
    assert '"count"' in result.to_json(indent=None)


def test_bad_input_gives_clear_errors():
    fixture = make_fixture("relu_mlp")
    with pytest.raises(UnsupportedModelError, match="Tanh"):
        linear_regions(make_fixture("mlp").model, make_fixture("mlp").inputs)
    with pytest.raises(UnsupportedModelError, match="layer '1' \\(GELU\\)"):
        linear_regions(nn.Sequential(nn.Linear(2, 2), nn.GELU()), plane=PLANE_2D)

    class Smooth(nn.Module):
        def forward(self, x):
            return torch.tanh(x)

    with pytest.raises(UnsupportedModelError, match="function 'tanh'"):
        linear_regions(Smooth(), plane=PLANE_2D)
    with pytest.raises(InvalidParameterError, match="collinear"):
        linear_regions(fixture.model, plane=torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]]))
    with pytest.raises(InvalidParameterError, match="shape"):
        linear_regions(fixture.model, plane=torch.eye(3))
    with pytest.raises(InvalidParameterError, match="shaped like the inputs"):
        linear_regions(fixture.model, fixture.inputs, line=torch.zeros(2, 5))
    with pytest.raises(InvalidParameterError):
        linear_regions(fixture.model, line=fixture.inputs[:2], plane=fixture.inputs[:3])
    with pytest.raises(InvalidParameterError, match="max_regions"):
        linear_regions(fixture.model, fixture.inputs, max_regions=0)
    with pytest.raises(DeepscopeError, match="max_regions=3"):
        linear_regions(fixture.model, fixture.inputs, max_regions=3)


def test_decision_boundary_crossings_match_class_changes_along_lines():
    # along horizontal lines, the number of boundary segments crossed equals the number of class
    # changes of the network sampled densely (triple points and multi-class ties included)
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(2, 12), nn.ReLU(), nn.Linear(12, 12), nn.ReLU(), nn.Linear(12, 5))
    result = linear_regions(model, plane=PLANE_2D, bounds=(-3, 3, -3, 3))
    segments = result.decision_boundary
    assert len(segments) > 5
    x = np.linspace(-3, 3, 6001)
    for height in np.linspace(-2.9, 2.9, 23):
        classes = model.double()(torch.as_tensor(np.stack([x, np.full_like(x, height)], 1))).argmax(1).numpy()
        changes = int((classes[1:] != classes[:-1]).sum())
        low, high = segments[:, :, 1].min(axis=1), segments[:, :, 1].max(axis=1)
        crossed = int(((low < height) & (high > height)).sum())
        assert crossed == changes, height


def test_max_pool_patterns_match_sampled_argmaxes():
    # conv -> ReLU -> 2x2 max-pool: each region's pattern (ReLU bits, then the argmax inside each
    # window) equals the one computed directly at grid points away from ties
    torch.manual_seed(6)
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8, 3)
    ).double()
    plane = torch.randn(3, 1, 4, 4, dtype=torch.float64)
    result = linear_regions(model, plane=plane)
    u = np.linspace(result.bounds[0], result.bounds[1], 41)[1:-1]
    v = np.linspace(result.bounds[2], result.bounds[3], 41)[1:-1]
    grid = np.stack(np.meshgrid(u, v), -1).reshape(-1, 2)
    x = result.to_input(grid)
    with torch.no_grad():
        pre = model[0](x)
        relu = torch.relu(pre)
        windows = relu.unfold(2, 2, 2).unfold(3, 2, 2).reshape(len(x), 2, 2, 2, 4)  # (n, c, h, w, 4)
    top2 = windows.topk(2, dim=-1).values
    clear = (pre.abs().flatten(1).min(dim=1).values > 1e-7) & ((top2[..., 0] - top2[..., 1]).flatten(1) > 1e-9).all(1)
    expected = np.concatenate([(pre > 0).flatten(1).numpy(), windows.argmax(dim=-1).flatten(1).numpy()], axis=1).astype(
        np.int16
    )
    region = result.region_of(grid)
    assert clear.sum() > 100 and (region >= 0).all()
    np.testing.assert_array_equal(result.patterns[region[clear.numpy()]], expected[clear.numpy()])


class LeakyAverage(nn.Module):
    """LeakyReLU modules and functions, average pooling, torch.flatten and scalar arithmetic."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.act = nn.LeakyReLU(0.2)
        self.pool = nn.AvgPool2d(2)
        self.head = nn.Linear(12, 2)

    def forward(self, x):
        h = self.pool(self.act(self.conv(x)))
        h = nn.functional.leaky_relu(2.0 * h - 0.1, 0.1)
        return self.head(torch.flatten(h, 1))


def test_leaky_relu_average_pool_and_functional_ops_are_exact():
    torch.manual_seed(7)
    model = LeakyAverage()
    plane = torch.randn(3, 1, 4, 4)
    result = linear_regions(model, plane=plane)
    assert [layer["kind"] for layer in result.layers] == ["leaky_relu", "leaky_relu"]
    assert result.count > 1 and result.max_abs_error < 1e-12
    rng = np.random.default_rng(1)
    corners = result.vertices[0, : result.vertex_counts[0]]
    inside = rng.dirichlet(np.ones(len(corners)), size=4) @ corners
    with torch.no_grad():
        expected = model.double()(result.to_input(inside)).numpy()
    np.testing.assert_allclose(inside @ result.output_maps[0, :-1] + result.output_maps[0, -1], expected, atol=1e-12)


def test_single_logit_boundary_is_where_the_logit_vanishes():
    model = nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, -1.0]]))
        model.bias.copy_(torch.tensor([0.25]))
    result = linear_regions(model, plane=PLANE_2D, bounds=(-1, 1, -1, 1))
    segment = result.decision_boundary[0]
    np.testing.assert_allclose(segment[:, 0] - segment[:, 1], [-0.25, -0.25], atol=1e-12)  # x - y + 1/4 = 0


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(12))
def test_random_architectures_tile_the_square_exactly(seed):
    torch.manual_seed(seed)
    widths = torch.randint(3, 24, (3,)).tolist()
    layers, previous = [], 2
    for width in widths:
        layers += [nn.Linear(previous, width), nn.ReLU() if seed % 2 else nn.LeakyReLU(0.3)]
        previous = width
    model = nn.Sequential(*layers, nn.Linear(previous, 4))
    result = linear_regions(model, plane=PLANE_2D, bounds=(-4, 4, -4, 4), check_regions=100_000)
    from deepscope.expressivity._geometry import Pieces, measures

    assert measures(Pieces(result.vertices, result.vertex_counts)).sum() == pytest.approx(64.0, rel=1e-9)
    assert result.max_abs_error < 1e-12  # every region's map checked at its interior point


class TwoBranches(nn.Module):
    """Two ReLU branches concatenated along features (torch.cat with a negative dim)."""

    def __init__(self):
        super().__init__()
        self.left, self.right = nn.Linear(2, 4), nn.Linear(2, 3)
        self.head = nn.Linear(7, 2)

    def forward(self, x):
        return self.head(torch.cat([torch.relu(self.left(x)), torch.relu(self.right(x))], dim=-1))


def test_concatenated_branches_give_the_arrangement_of_all_their_lines():
    torch.manual_seed(8)
    model = TwoBranches()
    w = torch.cat([model.left.weight, model.right.weight]).detach().double().numpy()
    c = torch.cat([model.left.bias, model.right.bias]).detach().double().numpy()
    crossings = [np.linalg.solve(w[[i, j]], -c[[i, j]]) for i in range(7) for j in range(i + 1, 7)]
    reach = float(np.abs(crossings).max()) * 1.5 + 1.0
    result = linear_regions(model, plane=PLANE_2D, bounds=(-reach, reach, -reach, reach))
    assert result.count == 1 + 7 + math.comb(7, 2)  # 7 lines in general position
    assert result.max_abs_error < 1e-12


def test_the_decision_boundary_skips_only_cells_without_a_tie():
    # oracle: every cell's corners evaluated (the formula without the disc shortcut); the shortcut
    # must keep every tied edge, so the segments are the same, in the same order
    from deepscope.expressivity import _geometry as geometry
    from deepscope.expressivity.regions import _decision_boundary

    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4))
    result = linear_regions(model, plane=PLANE_2D, bounds=(-3.0, 3.0, -3.0, 3.0))
    pieces = geometry.Pieces(result.vertices, result.vertex_counts)
    tol = 1e-9 * math.dist((-3.0, -3.0), (3.0, 3.0))
    functions = result.output_maps.transpose(0, 2, 1)
    cells, source, winner = geometry.partition_by_argmax(pieces, functions, tol)
    vertices, counts, f = np.nan_to_num(cells.vertices), cells.counts, functions[source]
    outputs = np.einsum("cmk,cok->cmo", vertices, f[:, :, :2]) + f[:, None, :, 2]
    best = np.take_along_axis(outputs, winner[:, None, None], axis=2)[:, :, 0]
    scale = 1e-7 * (1.0 + np.abs(outputs).max(axis=(1, 2)))
    tied = (np.abs(best[:, :, None] - outputs) <= scale[:, None, None]) & (
        np.arange(4)[None, None, :] > winner[:, None, None]
    )
    index = np.arange(vertices.shape[1])[None, :]
    following = (index + 1) % counts[:, None]
    edge = (index < counts[:, None]) & (tied & np.take_along_axis(tied, following[:, :, None], axis=1)).any(axis=2)
    cell, corner = np.nonzero(edge)
    ends = np.take_along_axis(vertices, following[:, :, None], axis=1)
    expected = np.stack([vertices[cell, corner], ends[cell, corner]], axis=1)
    got = _decision_boundary(pieces, result.output_maps, tol)
    assert len(expected) > 5 and np.array_equal(got, expected)
