"""The interpreter: the inputs once, all references in one pass; rows kept in step; in-place steps safe."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from deepscope.attribution import deeplift
from deepscope.attribution._deeplift_interpreter import PairedInterpreter
from deepscope.attribution._trace import trace_model
from deepscope.attribution.deeplift import paired_multipliers
from deepscope.errors import UnsupportedModelError


def _one_hot(batch: int, length: int, seed: int) -> torch.Tensor:
    codes = torch.randint(0, 4, (batch, length), generator=torch.Generator().manual_seed(seed))
    return F.one_hot(codes, 4).permute(0, 2, 1).double()


class _Head(nn.Module):
    def __init__(self, length: int = 12):
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.pool = nn.Conv1d(4, 3, 5), nn.MaxPool1d(3, stride=2, ceil_mode=True)  # overlapping windows
        self.first, self.last = nn.Linear(3 * (length - 4) + 3 * 4, 6), nn.Linear(6, 2)
        self.double()

    def forward(self, x):
        h = torch.relu(self.conv(x))
        h = torch.cat([h.flatten(1), self.pool(h).flatten(1)], 1)
        return self.last(F.softmax(self.first(h), dim=-1))


def test_several_references_at_once_equal_one_reference_at_a_time():
    model = _Head()
    x, references = _one_hot(3, 12, 6), _one_hot(12, 12, 7)  # 4 references per example, example-major
    x[1, :, 3:5] = 0.0  # N positions are fine
    interpreter = PairedInterpreter(trace_model(model, owner="test"), 1e-10, {})
    targets = torch.tensor([[0, 1, 0], [1, 1, 0]])
    multipliers, at_input, at_references = paired_multipliers(interpreter, x, references, (), targets, None, "test")
    for k in range(4):
        rows = references.view(3, 4, 4, 12)[:, k]
        for t in range(2):
            one = deeplift(model, x, target=targets[t], baseline=rows)
            assert one.diagnostics["completeness_error"].max() < 1e-10  # overlapping pool windows too
            torch.testing.assert_close(
                (x - rows) * multipliers[t].view(3, 4, 4, 12)[:, k], one.values, rtol=1e-10, atol=1e-13
            )
            torch.testing.assert_close(at_input[t] - at_references[t].view(3, 4)[:, k], one.diagnostics["delta"])


def test_in_place_steps_and_a_moved_batch_axis():
    class InPlace(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(3)
            self.conv, self.act, self.linear = nn.Conv1d(4, 3, 3), nn.ReLU(inplace=True), nn.Linear(30, 2)
            self.double()

        def forward(self, x):
            return self.linear(F.hardtanh(self.act(self.conv(x)), inplace=True).flatten(1))

    x, baseline = _one_hot(4, 12, 8), _one_hot(4, 12, 9)
    assert deeplift(InPlace(), x, target=1, baseline=baseline).diagnostics["completeness_error"].max() < 1e-10

    class Transposed(nn.Module):
        def forward(self, x):
            return torch.tanh(x.transpose(0, 1)).transpose(0, 1).sum(1, keepdim=True)

    # with one reference per example the element-wise rule is right whatever the layout; with two
    # the rows of an example and of its references no longer line up, which is refused
    rows, references = x[:, 0], torch.cat([x[:, 1], x[:, 2]]).view(2, 4, 12).transpose(0, 1).reshape(8, 12)
    interpreter = PairedInterpreter(trace_model(Transposed(), owner="test"), 1e-10, {})
    with pytest.raises(UnsupportedModelError, match="batch as its first axis"):
        paired_multipliers(interpreter, rows, references, (), torch.zeros(1, 4, dtype=torch.long), None, "test")


def test_a_trimmed_wide_convolution_runs_on_its_window_with_captums_multipliers():
    from captum.attr import DeepLift

    class Trimmed(nn.Module):  # bpnet-lite's profile head: a wide convolution, then [:, :, trim:length - trim]
        def __init__(self):
            super().__init__()
            torch.manual_seed(5)
            self.body, self.act, self.squash = nn.Conv1d(4, 8, 5, padding=2), nn.ReLU(), nn.Tanh()  # modules: Captum
            self.head, self.linear = nn.Conv1d(8, 2, 41, padding=20), nn.Linear(2 * 20, 2)  # fan-in 328: channels-last
            self.double()

        def forward(self, x):
            start, end = 15, x.shape[2] - 15
            return self.linear(self.squash(self.head(self.act(self.body(x)))[:, :, start:end]).flatten(1))

    model, x, baseline = Trimmed(), _one_hot(3, 50, 10), _one_hot(3, 50, 11)
    interpreter = PairedInterpreter(trace_model(model, owner="test"), 1e-10, {})
    multipliers, _, _ = paired_multipliers(interpreter, x, baseline, (), torch.tensor([[1, 0, 1]]), None, "test")
    assert [node.name for node in interpreter.passed] == ["getitem_1"]  # the slice took the window's value
    reference = DeepLift(model).attribute(x, baselines=baseline, target=torch.tensor([1, 0, 1]))
    # the same rules in float64 (Captum's tanh threshold 1e-10 is ours); the window and the channels-last
    # kernel only change the summation order: ~1e-16
    torch.testing.assert_close((x - baseline) * multipliers[0], reference, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("kernel", "stride", "padding"), [(3, 3, 0), (3, 2, 1)])
def test_functional_and_module_max_pooling_give_tangermemes_routing(kernel, stride, padding):
    import warnings

    from tangermeme.deep_lift_shap import deep_lift_shap as theirs

    from deepscope.attribution.deep_lift_shap import deep_lift_shap

    class Pooled(nn.Module):
        def __init__(self, functional: bool):
            super().__init__()
            torch.manual_seed(6)
            self.conv, self.act = nn.Conv1d(4, 3, 3), nn.ReLU()
            self.pool, self.functional = nn.MaxPool1d(kernel, stride, padding=padding), functional
            self.linear = nn.Linear(3 * ((18 + 2 * padding - kernel) // stride + 1), 2)
            self.double()

        def forward(self, x):
            h = self.act(self.conv(x))
            h = F.max_pool1d(h, kernel, stride, padding) if self.functional else self.pool(h)
            return self.linear(h.flatten(1))

    x = _one_hot(4, 20, 12)
    references = torch.stack([_one_hot(4, 20, seed) for seed in (13, 14, 15)], 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = theirs(Pooled(False), x, target=1, references=references, device="cpu")
    for functional in (False, True):
        ours = deep_lift_shap(Pooled(functional), x, target=1, references=references)
        # tangermeme's max-pool routing in float64: rounding only (values ~0.1)
        torch.testing.assert_close(ours.values, expected, rtol=0, atol=1e-12)


def test_a_normalised_convolution_is_folded_with_captums_multipliers():
    from captum.attr import DeepLift

    torch.manual_seed(7)
    model = nn.Sequential(nn.Conv1d(4, 6, 5), nn.BatchNorm1d(6), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 16, 2))
    with torch.no_grad():
        model[1].running_mean.uniform_(-1, 1), model[1].running_var.uniform_(0.5, 2), model[1].weight.uniform_(-2, 2)
    model = model.double().eval()
    x, baseline = _one_hot(3, 20, 14), _one_hot(3, 20, 15)
    interpreter = PairedInterpreter(trace_model(model, owner="test"), 1e-10, {})
    multipliers, _, _ = paired_multipliers(interpreter, x, baseline, (), torch.tensor([[0, 1, 1]]), None, "test")
    assert [node.name for node in interpreter.passed] == ["_1"]  # the normalisation took the folded value
    reference = DeepLift(model).attribute(x, baselines=baseline, target=torch.tensor([0, 1, 1]))
    # Captum propagates through the normalisation as affine: the same multipliers, float64 rounding only
    torch.testing.assert_close((x - baseline) * multipliers[0], reference, rtol=1e-10, atol=1e-12)


def test_a_slice_whose_bounds_come_after_the_convolution_takes_the_whole_output():
    class Late(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(8)
            self.conv, self.linear = nn.Conv1d(4, 2, 5, padding=2), nn.Linear(2 * 10, 2)
            self.double()

        def forward(self, x):
            h = self.conv(x)
            end = x.shape[2] - 5  # computed after the convolution: unknown when it runs
            return self.linear(torch.tanh(h[:, :, 5:end]).flatten(1))

    model, x, baseline = Late(), _one_hot(2, 20, 16), _one_hot(2, 20, 17)
    interpreter = PairedInterpreter(trace_model(model, owner="test"), 1e-10, {})
    multipliers, at_input, _ = paired_multipliers(interpreter, x, baseline, (), torch.tensor([[0, 1]]), None, "test")
    assert not interpreter.passed
    torch.testing.assert_close(at_input[0], model(x).gather(1, torch.tensor([[0], [1]])).squeeze(1))
    ours = deeplift(model, x, target=torch.tensor([0, 1]), baseline=baseline)
    assert ours.diagnostics["completeness_error"].max() < 1e-10
    torch.testing.assert_close((x - baseline) * multipliers[0], ours.values, rtol=0, atol=1e-14)
