"""Every curvature analysis of a Problem gives the same numbers when the model returns a tuple/dict
(picked by ``Problem(output_fn=...)``) or takes its inputs as a dict (``model(**x)``), as on the
bare model with a plain tensor: the same layers on the same inputs in the same order, so the
results agree to float32 rounding (rtol 1e-5 leaves room for the few hundred accumulated ops of a
Lanczos or Hutch++ run; the runs follow the same random probes, since the seeds are equal).
"""

import pytest
import torch
from torch import nn

from deepscope import Problem
from deepscope.registry import load_all_analyses
from deepscope.testing import make_fixture

ANALYSES = {
    name: spec for name, spec in load_all_analyses().items() if spec.family == "curvature" and spec.takes == "problem"
}


class Wrapped(nn.Module):
    """The fixture's Sequential, fed from a dict (``features=``) and returning a dict or a tuple."""

    def __init__(self, inner: nn.Sequential, kind: str):
        super().__init__()
        for name, layer in inner.named_children():  # the same parameter names ("0.weight", ...)
            self.add_module(name, layer)
        self.kind = kind

    def forward(self, features, scale=None):
        x = features if scale is None else features * scale
        for layer in self.children():
            x = layer(x)
        return {"logits": x, "hidden": torch.relu(x)} if self.kind == "dict" else (x, torch.relu(x))


def _numbers(result):
    if isinstance(result, torch.Tensor):
        return result.double()
    for fields in (
        ("eigenvalues",),
        ("trace",),
        ("mean_eigenvalue",),
        ("traces", "top_eigenvalues"),
        ("losses",),
    ):
        if all(hasattr(result, field) for field in fields):
            values = [getattr(result, field) for field in fields]
            return torch.tensor([float(v) for value in values for v in _flat(value)], dtype=torch.float64)
    raise AssertionError(f"no numbers known for {type(result).__name__}")


def _flat(value):
    if isinstance(value, (list, tuple)):
        return [item for part in value for item in _flat(part)]
    return [value]


def _options(name, problem):
    options = dict(ANALYSES[name].example_kwargs)
    if name == "loss_interpolation":
        weights = problem.parameters(trainable_only=False)  # the fixture freezes a weight
        options["start"] = {key: torch.zeros_like(value) for key, value in weights.items()}
    return options


@pytest.mark.parametrize("kind", ["dict", "tuple"])
@pytest.mark.parametrize("name", sorted(ANALYSES))
def test_dict_inputs_and_picked_outputs_give_the_bare_models_numbers(name, kind):
    fixture = make_fixture(ANALYSES[name].fixture)
    x, y = fixture.inputs[:16], fixture.targets[:16]
    plain = Problem(fixture.model, (x, y), batch_size=8)
    wrapped = Problem(
        Wrapped(fixture.model, kind),
        ({"features": x, "scale": torch.ones_like(x)}, y),
        batch_size=8,
        output_fn=(lambda out: out["logits"]) if kind == "dict" else (lambda out: out[0]),
    )
    spec = ANALYSES[name]
    want = _numbers(spec.function(plain, **_options(name, plain)))
    got = _numbers(spec.function(wrapped, **_options(name, wrapped)))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
