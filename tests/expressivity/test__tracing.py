import pytest
import torch
from torch import nn

from deepscope.errors import UnsupportedModelError
from deepscope.expressivity import layer_health, lipschitz
from deepscope.expressivity._tracing import traced


class _DataDependent(nn.Module):
    """Control flow on a tensor's value: torch.fx refuses it (as it refuses HF BERT's mask handling)."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 2)

    def forward(self, x):
        if x.sum() > 0:
            return self.linear(x)
        return -self.linear(x)


def test_traced_graph_computes_the_model():
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    x = torch.randn(5, 3)
    torch.testing.assert_close(traced(net, "lipschitz")(x), net(x))


@pytest.mark.parametrize("call, owner", [(lipschitz, "lipschitz"), (layer_health, "layer_health")])
def test_refusal_names_the_analysis_called_not_linear_regions(call, owner):
    with pytest.raises(UnsupportedModelError) as caught:
        call(_DataDependent(), torch.randn(4, 3))
    message = str(caught.value)
    assert message.startswith(f"{owner} needs a model torch.fx can trace") and "_DataDependent" in message
    assert "linear regions" not in message.lower()
