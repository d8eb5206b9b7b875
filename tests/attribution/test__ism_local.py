"""The receptive-field engine of ISM: every mutant's output equals a full forward pass."""

import numpy as np
import pytest
import torch
from torch import nn

from deepscope.attribution._ism_local import plan_local, reference_pass


class Residual(nn.Module):
    """BPNet-like: dilated residual convolutions, a cropped profile head and a mean count head."""

    def __init__(self, crop=4):
        super().__init__()
        self.first = nn.Conv1d(4, 6, 5, padding=2)
        self.convs = nn.ModuleList([nn.Conv1d(6, 6, 3, padding=d, dilation=d) for d in (2, 4)])
        self.profile = nn.Conv1d(6, 1, 9, padding=4)
        self.count = nn.Linear(6, 1)
        self.crop = crop

    def forward(self, x, control=None):
        h = torch.relu(self.first(x))
        for conv in self.convs:
            h = h + torch.relu(conv(h))
        if control is not None:
            h = h * torch.sigmoid(control)
        profile = self.profile(h)[:, :, self.crop : x.shape[2] - self.crop]
        return profile, self.count(h.mean(dim=2))


class Concat(nn.Module):
    """A channel cat of the sequence's features with a per-position control track."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(4, 3, 3, padding=1)
        self.head = nn.Conv1d(4, 2, 5)
        self.out = nn.Linear(2, 2)

    def forward(self, x, control):
        h = torch.cat([nn.functional.elu(self.conv(x)), control], dim=1)
        return self.out(self.head(h).amax(dim=2))


class Broadcast(nn.Module):
    """A local node of length 1 (a max pool over the whole sequence) added back onto every position."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(4, 3, 5, padding=2)
        self.pool = nn.MaxPool1d(40)
        self.head = nn.Conv1d(3, 2, 3, padding=1)

    def forward(self, x):
        h = torch.relu(self.conv(x))
        return self.head(h + self.pool(h)).sum(2)


class SamePadding(nn.Module):
    """String paddings (an even kernel with padding="same" pads one more on the right), a dtype cast, PReLU."""

    def __init__(self):
        super().__init__()
        self.even = nn.Conv1d(4, 3, 4, padding="same")
        self.valid = nn.Conv1d(3, 2, 3, padding="valid", dilation=2)
        self.prelu = nn.PReLU(3)

    def forward(self, x):
        return self.valid(self.prelu(self.even(x.double()))).flatten(1)


MODELS = {
    "same_padding": SamePadding,
    "broadcast": Broadcast,
    "pooling": lambda: nn.Sequential(
        nn.Conv1d(4, 5, 7), nn.BatchNorm1d(5), nn.ReLU(inplace=True), nn.MaxPool1d(3, padding=1),
        nn.Conv1d(5, 4, 3, stride=2), nn.Tanh(), nn.AvgPool1d(2), nn.Flatten(), nn.LazyLinear(3),
    ),
    "residual": Residual,
}  # fmt: skip


def one_hot(n, length, seed=0):
    g = torch.Generator().manual_seed(seed)
    return nn.functional.one_hot(torch.randint(0, 4, (n, length), generator=g), 4).transpose(1, 2).double()


def every_mutant(x, start, end):
    example, letter, position = torch.nonzero(x[:, :, start:end] == 0, as_tuple=True)
    return example, letter, position + start


def full_pass(model, x, example, letter, position, args=()):
    mutated = x[example].clone()
    rows = torch.arange(len(example))
    mutated[rows, :, position] = 0
    mutated[rows, letter, position] = 1
    return model(mutated, *[a[example] for a in args])


def run_plan(model, x, start, end, args=()):
    plan = plan_local(model, len(args))
    ref = reference_pass(plan, x, args)
    useful = plan.build(ref, x.shape[0], start, end)
    plan.set_reference(ref)
    example, letter, position = every_mutant(x, start, end)
    return plan, useful, plan.run((position - start).numpy(), example, letter, args), (example, letter, position)


def flat(output):
    return torch.cat([o.flatten(1) for o in output], 1) if isinstance(output, tuple) else output


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("span", [(0, 40), (3, 11)])
def test_every_mutant_equals_the_full_forward_pass(name, span):
    # oracle: the model run on each mutated sequence; the window convolutions add the same products in
    # another order, so float64 agrees to ~1e-15 relative
    torch.manual_seed(0)
    model = MODELS[name]().double()
    x = one_hot(3, 40)
    x[1, :, 0] = 0  # an N at the first position and one inside
    x[2, :, 7] = 0
    model(x)  # materialise lazy layers
    model.eval()
    plan, useful, fast, mutants = run_plan(model, x, *span)
    assert useful
    with torch.no_grad():
        torch.testing.assert_close(flat(fast), flat(full_pass(model, x, *mutants)), rtol=1e-10, atol=1e-12)


def test_extra_model_arguments_are_given_each_mutants_rows():
    torch.manual_seed(1)
    for model, control in (
        (Residual().double().eval(), torch.randn(2, 6, 30)),
        (Concat().double(), torch.randn(2, 1, 30)),
    ):
        x = one_hot(2, 30, seed=1)
        plan, _, fast, mutants = run_plan(model, x, 0, 30, args=(control.double(),))
        with torch.no_grad():
            expected = full_pass(model, x, *mutants, args=(control.double(),))
        torch.testing.assert_close(flat(fast), flat(expected), rtol=1e-10, atol=1e-12)


def test_windows_are_the_receptive_fields():
    # conv k=5 (±2), then dilations 2 and 4 with k=3 (±2, ±4): the residual sums are ±2, ±4, ±8 wide
    model = Residual().double().eval()
    plan, _, _, _ = run_plan(model, one_hot(1, 64), 0, 64)
    widths = {str(node).removeprefix("model_"): plan.width[node] for node in plan.order}
    assert widths["first"] == 5 and widths["convs_0"] == 9 and widths["add"] == 9
    assert widths["convs_1"] == 17 and widths["add_1"] == 17 and widths["profile"] == 25
    # windows are not clipped at the ends: position 0's window starts 8 positions before the sequence
    add_1 = next(node for node in plan.order if str(node) == "add_1")
    assert plan.starts[add_1][0] == -8 and np.all(np.diff(plan.starts[add_1]) == 1)


def test_a_dense_model_has_nothing_to_localise():
    model = nn.Sequential(nn.Flatten(), nn.Linear(40, 2)).double()
    plan = plan_local(model, 0)
    ref = reference_pass(plan, one_hot(1, 10), ())
    assert plan.build(ref, 1, 0, 10) is False


def test_models_with_optional_arguments_and_kwargs_are_traced():
    # bpnet-lite's wrappers: forward(X, X_ctl=None, **kwargs); the optional ones keep their defaults
    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = Residual()

        def forward(self, x, control=None, **kwargs):
            return self.inner(x, control, **kwargs)[1]

    model = Wrapper().double().eval()
    for args in ((), (torch.randn(2, 6, 30, dtype=torch.float64),)):
        x = one_hot(2, 30, seed=2)
        plan, useful, fast, mutants = run_plan(model, x, 0, 30, args=args)
        assert useful
        with torch.no_grad():
            torch.testing.assert_close(fast, full_pass(model, x, *mutants, args=args), rtol=1e-10, atol=1e-12)


def test_untraceable_model_gives_no_plan():
    class Branchy(nn.Module):
        def forward(self, x):
            return x.sum(1) if x.sum() > 0 else -x.sum(1)

    assert plan_local(Branchy(), 0) is None
