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


class _TokenAttention(nn.Module):
    """Token ids -> embedding -> torch's MultiheadAttention -> mean -> 3 scores."""

    def __init__(self, need_weights: bool):
        super().__init__()
        self.embedding = nn.Embedding(12, 8)
        self.attention = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 3)
        self.need_weights = need_weights

    def forward(self, ids):
        h = self.embedding(ids)
        return self.head(self.attention(h, h, h, need_weights=self.need_weights)[0].mean(1))


def test_integer_ids_through_torch_attention_match_the_explicit_softmax_path():
    """need_weights=False runs fused SDPA (math kernel under the operator), True the explicit
    softmax: same weights, so the dense Hessians agree to float64 rounding (relative 1e-9), and the
    note says the math kernel ran only for the fused one. No transformers needed."""
    torch.manual_seed(0)
    fused, explicit = _TokenAttention(False).double(), _TokenAttention(True).double()
    explicit.load_state_dict(fused.state_dict())
    ids, labels = torch.randint(0, 12, (6, 5)), torch.arange(6) % 3
    problems = [Problem(model, (ids, labels)) for model in (fused, explicit)]
    dense = [ANALYSES["dense_hessian"].function(problem) for problem in problems]
    torch.testing.assert_close(dense[0], dense[1], rtol=1e-9, atol=1e-12)
    assert float(dense[1].abs().max()) > 1e-2
    tops = [ANALYSES["hessian_eigenvalues"].function(problem, tol=1e-8) for problem in problems]
    assert tops[0].eigenvalues[0] == pytest.approx(float(torch.linalg.eigvalsh(dense[1])[-1]), rel=1e-7)
    assert "math kernel" in tops[0].note and "math kernel" not in tops[1].note
