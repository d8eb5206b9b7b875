"""The token rendering: escaped text, colour by sign and size, padding left out, ids without a tokenizer."""

import pytest
import torch

from deepscope.attribution.token_figure import token_html, token_labels, token_rows
from deepscope.errors import InvalidParameterError


def test_colours_follow_sign_and_size_and_text_is_escaped():
    html = token_html([("lig, example 0", ["<b>", "up", "down"], [0.0, 2.0, -1.0])])
    assert "&lt;b&gt;" in html and "<b>" not in html
    assert "rgba(214, 39, 40, 1.000)" in html  # the largest positive score: full red
    assert "rgba(31, 119, 180, 0.500)" in html  # half the largest, negative: half blue
    assert 'title="+2"' in html and 'title="-1"' in html
    assert "<script" not in html and "class=" in html  # inline styles only


def test_rows_drop_padding_and_show_ids_without_a_tokenizer():
    inputs = {"input_ids": torch.tensor([[5, 6, 0], [7, 8, 9]]), "attention_mask": torch.tensor([[1, 1, 0], [1, 1, 1]])}
    scores = torch.tensor([[0.1, 0.2, 9.0], [1.0, 2.0, 3.0]])
    assert token_rows(inputs, scores, 0) == (["5", "6"], pytest.approx([0.1, 0.2]))
    assert token_rows(inputs["input_ids"], scores, 0)[0] == ["5", "6", "0"]

    class Tokenizer:
        def convert_ids_to_tokens(self, ids):
            return [f"w{i}" for i in ids]

    assert token_labels(torch.tensor([3, 4]), Tokenizer()) == ["w3", "w4"]
    with pytest.raises(InvalidParameterError, match="per-token scores"):
        token_rows(inputs, torch.zeros(2, 3, 4), 0)
    with pytest.raises(InvalidParameterError, match="one score per token"):
        token_html([("x", ["a"], [1.0, 2.0])])


def test_the_figure_colours_each_token_box_by_its_score():
    from deepscope.attribution.token_figure import token_plot

    figure = token_plot([("example 0", ["a", "b", "c"], [1.0, -0.5, 0.0])], per_line=2)
    boxes = {text.get_text(): text.get_bbox_patch() for text in figure.axes[0].texts if text.get_bbox_patch()}
    assert set(boxes) == {"a", "b", "c"}
    red, blue = boxes["a"].get_facecolor(), boxes["b"].get_facecolor()
    assert red[0] > red[2] and red[3] == pytest.approx(1.0)  # positive: red, full
    assert blue[2] > blue[0] and blue[3] == pytest.approx(0.5)  # negative: blue, half
    assert boxes["c"].get_facecolor()[3] == 0.0
    with pytest.raises(InvalidParameterError, match="one score per token"):
        token_plot([("x", ["a"], [])])
