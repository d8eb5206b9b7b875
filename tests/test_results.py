import dataclasses
import json

import numpy as np
import pytest
import torch

from deepscope.errors import DeepscopeError
from deepscope.results import Result, to_jsonable


@dataclasses.dataclass(frozen=True)
class Example(Result):
    value: float
    values: torch.Tensor
    label: str = "x"


def test_to_dict_and_json_are_strict():
    result = Example(value=float("nan"), values=torch.tensor([1.0, float("inf")]))
    assert result.to_dict() == {"value": "nan", "values": [1.0, "inf"], "label": "x"}
    payload = json.loads(result.to_json())
    assert payload["type"] == "Example"


def test_frozen_rows_frame_and_html():
    result = Example(value=1.5, values=torch.tensor([2.0]))
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.value = 2.0
    assert result.rows() == [{"value": 1.5, "values": 2.0, "label": "x"}]
    assert list(result.to_frame().columns) == ["value", "values", "label"]
    html = result._repr_html_()
    assert isinstance(html, str) and "<table>" in html and "Example" in html


def test_plot_default_is_a_clear_error():
    with pytest.raises(DeepscopeError, match="has no figure"):
        Example(value=1.0, values=torch.zeros(1)).plot()


def test_to_jsonable_handles_numpy_nested_and_complex():
    value = {"a": np.float32(1.5), "b": (np.arange(2), {"c": torch.tensor([1 + 2j])}), 3: None}
    assert to_jsonable(value) == {"a": 1.5, "b": [[0, 1], {"c": [[1.0, 2.0]]}], "3": None}
