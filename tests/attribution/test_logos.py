"""Attribution logos: glyph boxes equal the attribution heights; the patches fill those boxes."""

import numpy as np
import pytest
import torch

from deepscope.attribution import ism
from deepscope.attribution.logos import Glyph, attribution_logo, logo_glyphs
from deepscope.errors import InvalidParameterError


def test_glyphs_stack_positive_up_and_negative_down_by_magnitude():
    # hand example: column 0 has A=+0.5, C=+0.2, G=-0.3, T=-0.1; column 1 only T=+1
    heights = torch.tensor([[0.5, 0.0], [0.2, 0.0], [-0.3, 0.0], [-0.1, 1.0]], dtype=torch.float64)
    glyphs = logo_glyphs(heights, "ACGT")
    assert glyphs == [
        Glyph("C", 0.0, 0.0, 0.2),  # smallest positive nearest the axis
        Glyph("A", 0.0, pytest.approx(0.2), 0.5),
        Glyph("T", 0.0, -0.1, pytest.approx(0.1)),  # smallest magnitude nearest the axis
        Glyph("G", 0.0, pytest.approx(-0.4), pytest.approx(0.3)),
        Glyph("T", 1.0, 0.0, 1.0),
    ]


def test_patches_fill_their_boxes_and_only_observed_letters_are_drawn():
    # heights = values x one-hot: each position draws its observed letter with the attribution as height
    letters = torch.tensor([[0, 2, 3, 1]])
    x = torch.nn.functional.one_hot(letters, 4).transpose(1, 2).float()
    values = torch.tensor([[[0.4, -1.0, 2.0, 0.3]] * 4])  # the same score for every letter of a column
    figure = attribution_logo(values, x)
    patches = figure.axes[0].patches
    assert len(patches) == 4
    for column, (patch, score) in enumerate(zip(patches, [0.4, -1.0, 2.0, 0.3])):
        box = patch.get_path().get_extents()  # the outline's extent (curves, not control points)
        low, high = (box.x0, box.y0), (box.x1, box.y1)
        # the outline spans its box exactly: width 0.9 centred on the column, height |score| from the axis
        np.testing.assert_allclose([low[0], high[0]], [column - 0.45, column + 0.45], atol=1e-9)
        np.testing.assert_allclose([low[1], high[1]], sorted([0.0, score]), atol=1e-9)
    colours = [patch.get_facecolor() for patch in patches]
    assert colours[0] != colours[1] != colours[2] != colours[3]


def test_logo_of_an_ism_result_and_a_window():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv1d(4, 2, 3, padding=1), torch.nn.Flatten(), torch.nn.Linear(20, 1))
    x = torch.nn.functional.one_hot(torch.randint(0, 4, (2, 10)), 4).transpose(1, 2).float()
    result = ism(model, x, target=0)
    figure = attribution_logo(result, example=1, start=2, end=7)  # hypothetical: every letter drawn
    axes = figure.axes[0]
    assert axes.get_xlim() == (1.5, 6.5)
    expected = int((result.values[1, :, 2:7] != 0).sum())
    assert len(axes.patches) == expected
    assert type(figure).__name__ == "Figure" and figure.canvas.__class__.__name__ == "FigureCanvasBase"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"values": torch.ones(1, 3, 5)}, "values"),
        ({"values": torch.ones(1, 4, 5), "example": 1}, "example"),
        ({"values": torch.ones(1, 4, 5), "start": 4, "end": 2}, "start/end"),
        ({"values": torch.ones(1, 4, 5), "inputs": torch.ones(1, 4, 6)}, "inputs"),
        ({"values": torch.full((1, 4, 5), float("nan"))}, "finite"),
        ({"values": [1, 2]}, "values"),
    ],
)
def test_bad_arguments_are_refused(kwargs, match):
    with pytest.raises(InvalidParameterError, match=match):
        attribution_logo(**kwargs)
