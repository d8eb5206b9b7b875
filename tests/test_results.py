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


def test_summary_is_the_one_headline_and_the_base_lists_scalar_fields():
    @dataclasses.dataclass(frozen=True)
    class Headline(Result):
        trace: float
        samples: int
        note: str = ""
        values: torch.Tensor | None = None

    assert Headline(3.0, 10).summary() == "Headline: trace 3, samples 10."
    assert Headline(float("nan"), 1, note="x").summary() == "Headline: trace nan, samples 1, note x."

    @dataclasses.dataclass(frozen=True)
    class Nothing(Result):
        values: torch.Tensor

    assert Nothing(torch.zeros(3)).summary() == "Nothing."


# Results whose field named ``summary`` would shadow the method: none (Localisation's and Complexity's
# per-metric table is the field ``means``).
SUMMARY_FIELD_RESULTS: set[str] = set()


def _all_result_classes():
    from deepscope.registry import load_all_analyses

    load_all_analyses()
    found, stack = [], [Result]
    while stack:
        for child in stack.pop().__subclasses__():
            if child.__module__.startswith("deepscope."):
                found.append(child)
            stack.append(child)
    return found


def test_every_result_has_a_summary_method_under_that_one_name():
    classes = _all_result_classes()
    assert len(classes) > 40
    shadowed = {cls.__name__ for cls in classes if "summary" in {f.name for f in dataclasses.fields(cls)}}
    assert shadowed == SUMMARY_FIELD_RESULTS
    for cls in classes:
        assert callable(cls.summary), cls.__name__


def test_old_headline_names_are_aliases_of_summary():
    from deepscope.attribution.metrics.randomisation import RandomisationCheck
    from deepscope.models import model_summary
    from deepscope.models.gap import GapEstimate

    gap = GapEstimate(0.1, 0.2, 0.1, 0.05, 0.15, 0.95, 100, 50)
    assert gap.sentence() == gap.summary() and "gap" in gap.summary()
    summary = model_summary(torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU()), input_shape=(3,))
    assert summary.sentence("Net") == summary.summary("Net") and summary.summary().startswith("The model has 8")
    check = RandomisationCheck(["a"], torch.zeros(1, 2), [0.9], [0.0], None, 0.5, False, "saliency", 2)
    assert check.verdict == check.summary() and check.summary().startswith("failed")


def test_summary_ends_with_one_period_when_the_last_field_is_a_sentence():
    import dataclasses

    from deepscope.results import Result

    @dataclasses.dataclass(frozen=True)
    class Noted(Result):
        value: float
        note: str

    assert Noted(1.0, "Ran on the math kernel.").summary().endswith("kernel.")
    assert not Noted(1.0, "Ran on the math kernel.").summary().endswith("..")
    assert Noted(1.0, "plain").summary().endswith("plain.")
