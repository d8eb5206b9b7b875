"""deepscope/_batchnorm.py: the one BatchNorm folding and list of layer kinds, used by the measures and LRP."""

import ast
from pathlib import Path

import pytest
import torch
from torch import nn

from deepscope._batchnorm import AFFINE_LAYERS, BATCHNORMS, fold_batchnorm

PACKAGE = Path(__file__).resolve().parent.parent / "deepscope"


def _network(affine: bool, bias: bool, conv: bool):
    torch.manual_seed(0)
    layer = nn.Conv2d(2, 3, 3, bias=bias) if conv else nn.Linear(4, 3, bias=bias)
    norm = (nn.BatchNorm2d if conv else nn.BatchNorm1d)(3, affine=affine, eps=1e-3)
    norm.running_mean.uniform_(-1, 1)
    norm.running_var.uniform_(0.5, 2.0)
    if affine:
        norm.weight.data.uniform_(0.5, 1.5)
        norm.bias.data.uniform_(-0.5, 0.5)
    return layer, norm.eval()


@pytest.mark.parametrize("conv", [False, True], ids=["linear", "conv"])
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
def test_the_folded_layer_computes_batchnorm_of_the_layer(conv, affine, bias):
    layer, norm = _network(affine, bias, conv)
    weight, shift = fold_batchnorm(
        layer.weight.detach(),
        None if layer.bias is None else layer.bias.detach(),
        mean=norm.running_mean,
        var=norm.running_var,
        eps=norm.eps,
        gamma=norm.weight.detach() if affine else None,
        beta=norm.bias.detach() if affine else None,
    )
    x = torch.randn(5, 2, 6, 6) if conv else torch.randn(5, 4)
    folded = (nn.functional.conv2d if conv else nn.functional.linear)(x, weight, shift)
    with torch.no_grad():
        expected = norm(layer(x))
    # float32 rounding of a product and a sum per output: a few ulps of values of order 1
    torch.testing.assert_close(folded, expected, rtol=1e-5, atol=1e-5)


def test_the_layer_kinds():
    assert AFFINE_LAYERS == (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
    assert BATCHNORMS == (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _own_batchnorm_tuples(path: Path) -> list[str]:
    """Tuples of BatchNorm classes a module spells out itself instead of importing BATCHNORMS."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Tuple):
            names = {ast.unparse(e) for e in node.elts}
            if {"nn.BatchNorm1d", "nn.BatchNorm2d"} <= names:
                found.append(ast.unparse(node))
    return found


@pytest.mark.parametrize(
    "relative",
    [
        "generalization/_measures/_folding.py",
        "attribution/_lrp_graph.py",
        "attribution/_deeplift_graph.py",
        "expressivity/_pwl.py",
    ],
)
def test_the_measures_lrp_deeplift_and_regions_use_the_one_list_of_batchnorms(relative):
    assert _own_batchnorm_tuples(PACKAGE / relative) == []


@pytest.mark.parametrize("relative", ["generalization/_measures/_folding.py", "attribution/_lrp_graph.py"])
def test_the_measures_and_lrp_fold_with_the_one_function(relative):
    assert "fold_batchnorm(" in (PACKAGE / relative).read_text(encoding="utf-8")
