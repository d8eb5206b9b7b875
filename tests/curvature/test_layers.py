import pytest
import torch

from deepscope.curvature.hvp import ParameterSpace, dense_hessian
from deepscope.curvature.layers import group_by_layer, hessian_by_layer

from .conftest import tiny_classifier


def test_group_by_layer_keeps_model_order():
    assert group_by_layer(["0.weight", "0.bias", "2.weight", "scale"]) == {
        "0": ["0.weight", "0.bias"],
        "2": ["2.weight"],
        "scale": ["scale"],
    }


def test_per_layer_values_match_the_dense_diagonal_blocks():
    problem = tiny_classifier()
    full = dense_hessian(problem)
    space = ParameterSpace(problem.parameters())
    result = hessian_by_layer(problem, k=2, tol=1e-8, trace_rel_tol=0.01)
    assert result.layers == ["0", "2"]
    for layer, values, trace, error in zip(
        result.layers, result.top_eigenvalues, result.traces, result.trace_standard_errors
    ):
        names = [n for n in space.names if n.startswith(layer + ".")]
        index = torch.cat([torch.arange(space.slice_of(n).start, space.slice_of(n).stop) for n in names])
        block = full[index][:, index]
        expected = torch.linalg.eigvalsh(block).flip(0)[:2].tolist()
        # 1e-4 relative is the bar for eigenvalues
        assert values == pytest.approx(expected, rel=1e-4)
        # trace: exact when the block is small (Hutch++ sketch covers it), else within 3 SE
        assert abs(trace - float(torch.trace(block))) <= max(3 * error, 1e-9 * abs(trace))
    # the per-layer traces add up to the total trace (blocks partition the diagonal)
    assert sum(result.traces) == pytest.approx(
        float(torch.trace(full)), abs=3 * sum(result.trace_standard_errors) + 1e-9
    )
    assert result.plot() is not None and len(result.rows()) == 2
