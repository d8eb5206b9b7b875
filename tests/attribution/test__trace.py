"""Tracing model(x, *args) with the optional arguments left out at their defaults."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deepscope.attribution._trace import trace_model
from deepscope.errors import UnsupportedModelError


class _Optional(nn.Module):
    """``forward(x, extra=None, **kwargs)``: symbolic_trace makes ``extra`` a proxy and traces its branch."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 2)

    def forward(self, x, extra=None, **kwargs):
        if extra is None:
            return self.linear(x)
        return self.linear(x) + extra.sum(1, keepdim=True)


def test_optional_arguments_take_their_defaults_and_given_ones_are_placeholders():
    model = _Optional()
    x, extra = torch.randn(4, 3), torch.randn(4, 5)
    # the failure this module exists for: the optional branch is traced, extra becomes an input
    assert "extra" in {node.name for node in torch.fx.symbolic_trace(model).graph.nodes}
    plain = trace_model(model, owner="test")
    assert [node.name for node in plain.graph.nodes if node.op == "placeholder"] == ["x"]
    torch.testing.assert_close(plain(x), model(x))
    with_extra = trace_model(model, n_args=1, owner="test")
    assert [node.name for node in with_extra.graph.nodes if node.op == "placeholder"] == ["x", "arg0"]
    torch.testing.assert_close(with_extra(x, extra), model(x, extra))
    assert dict(model.named_parameters()).keys() == {"linear.weight", "linear.bias"}  # the model is only held


def test_leaf_types_are_kept_as_one_call_and_failures_are_named():
    class Scaling(nn.Module):
        def forward(self, h):
            return h * torch.softmax(h, -1)

    model = nn.Sequential(nn.Linear(3, 4), Scaling())
    targets = {str(node.target) for node in trace_model(model, owner="test", leaf_types=(Scaling,)).graph.nodes}
    assert "1" in targets and "<built-in function mul>" not in targets

    class Branchy(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x

    with pytest.raises(UnsupportedModelError, match=r"^lrp needs a model torch.fx can trace .*model\(x\) failed"):
        trace_model(Branchy(), owner="lrp")


class _Control(nn.Module):
    """bpnet-lite's ControlWrapper pattern: ``if extra != None`` and zeros sized from the input otherwise."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(5, 2)

    def forward(self, x, extra=None):
        if extra != None:  # noqa: E711 - the pattern under test
            return self.linear(torch.cat([x, extra], 1))
        if extra == None:  # noqa: E711
            extra = torch.zeros(x.shape[0], 2, dtype=x.dtype, device=x.device) + torch.ones(x.shape[0], 2)
        return self.linear(torch.cat([x, extra], 1))


def test_comparisons_with_none_and_sized_factories_are_resolved_and_leave_fx_usable():
    model, x, extra = _Control(), torch.randn(4, 3), torch.randn(4, 2)
    with pytest.raises(TypeError):  # what plain torch.fx does with the factory
        torch.fx.symbolic_trace(model, concrete_args={"extra": None})
    for _ in range(2):  # a second trace: the first one must not have left torch.fx's patcher broken
        plain, given = trace_model(model, owner="test"), trace_model(model, n_args=1, owner="test")
        torch.testing.assert_close(plain(x), model(x), rtol=0, atol=0)
        torch.testing.assert_close(given(x, extra), model(x, extra), rtol=0, atol=0)
        torch.testing.assert_close(plain(x[:2]), model(x[:2]), rtol=0, atol=0)  # the sizes are not baked in
    assert torch.fx.symbolic_trace(nn.Linear(3, 2)) is not None


@pytest.mark.parametrize("control", [False, True])
def test_bpnet_lite_control_wrapper_matches_tangermeme(control):
    import warnings

    from bpnetlite import BPNet
    from bpnetlite.bpnet import ControlWrapper, CountWrapper
    from tangermeme.deep_lift_shap import deep_lift_shap as theirs

    from deepscope.attribution.deep_lift_shap import deep_lift_shap
    from deepscope.data.shuffle import dinucleotide_shuffle

    torch.manual_seed(0)
    model = CountWrapper(ControlWrapper(BPNet(n_filters=8, n_layers=2, n_control_tracks=2, verbose=False)))
    model = model.double().eval()
    codes = torch.randint(0, 4, (3, 120), generator=torch.Generator().manual_seed(1))
    x = torch.nn.functional.one_hot(codes, 4).permute(0, 2, 1).double()
    references = dinucleotide_shuffle(x, n_shuffles=3, seed=2)
    args = (torch.rand(3, 2, 120, generator=torch.Generator().manual_seed(3), dtype=torch.float64),) if control else ()
    ours = deep_lift_shap(model, x, target=0, references=references, args=args)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = theirs(model, x, args=args or None, references=references, device="cpu")
    # the same rules in float64: values ~1e-3, differences are rounding (~1e-18)
    torch.testing.assert_close(ours.values, expected, rtol=0, atol=1e-12)
    assert ours.diagnostics["convergence_delta"].max() < 1e-12
