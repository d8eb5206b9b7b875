import matplotlib
import pytest
import torch
from torch import nn

from deepscope.attribution import saliency
from deepscope.errors import InvalidParameterError

matplotlib.use("Agg")


def _tabular_attribution():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 3))
    return saliency(model, torch.randn(4, 5), target=1)


def test_tabular_plot_uses_feature_names_and_top():
    attribution = _tabular_attribution()
    names = ["height", "weight", "age", "dose", "yield"]
    figure = attribution.plot(example=2, feature_names=names, top=3)
    labels = [tick.get_text() for tick in figure.axes[0].get_yticklabels()]
    order = attribution.values[2].abs().argsort(descending=True)[:3].tolist()
    assert labels == [names[j] for j in reversed(order)]  # largest |attribution| at the top of the chart
    default = [tick.get_text() for tick in attribution.plot().axes[0].get_yticklabels()]
    assert len(default) == 5 and all(label.startswith("x") for label in default)


@pytest.mark.parametrize(
    "kwargs, parameter",
    [
        ({"feature_names": ["a", "b"]}, "feature_names"),
        ({"feature_names": "abcde"}, "feature_names"),
        ({"top": 0}, "top"),
        ({"example": 4}, "example"),
    ],
)
def test_plot_rejects_bad_arguments(kwargs, parameter):
    with pytest.raises(InvalidParameterError, match=f"'{parameter}' parameter of Attribution.plot"):
        _tabular_attribution().plot(**kwargs)
