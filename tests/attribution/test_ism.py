import pytest
import torch

from deepscope.attribution import ism
from deepscope.errors import DataError


def one_hot(letters):
    return torch.nn.functional.one_hot(letters, 4).permute(0, 2, 1).double()


def test_linear_model_effects_are_weight_differences():
    # F(x) = Σ_l w[a_l, l]: mutating l to a changes F by w[a, l] − w[x_l, l]
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4 * 6, 2)).double()
    letters = torch.randint(0, 4, (3, 6))
    x = one_hot(letters)
    result = ism(model, x, target=1, max_batch=7)
    weight = model[1].weight[1].detach().view(4, 6)
    observed = weight[letters, torch.arange(6)]  # (3, 6): w[x_l, l]
    expected = (weight.unsqueeze(0) - observed.unsqueeze(1)) * (1 - x)
    torch.testing.assert_close(result.values, expected)
    assert result.diagnostics["path"] == "full forward passes (no convolution to localise)"


def test_brute_force_on_a_cnn():
    torch.manual_seed(1)
    model = torch.nn.Sequential(
        torch.nn.Conv1d(4, 3, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(15, 2)
    ).double()
    x = one_hot(torch.randint(0, 4, (1, 5)))
    result = ism(model, x, target=[[0], [1]])
    base = model(x)[0]
    for position in range(5):
        for letter in range(4):
            mutated = x.clone()
            mutated[0, :, position] = 0
            mutated[0, letter, position] = 1
            change = (model(mutated)[0] - base).detach()
            torch.testing.assert_close(result.values[:, 0, letter, position], change)


def test_non_one_hot_inputs_are_refused():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8, 2))
    with pytest.raises(DataError, match="one-hot"):
        ism(model, torch.rand(2, 4, 2))


class Counting(torch.nn.Module):
    """Counts the rows it is run on."""

    def __init__(self, model):
        super().__init__()
        self.model, self.rows = model, 0

    def forward(self, x, *args):
        self.rows += x.shape[0]
        return self.model(x, *args)


def small_cnn():
    torch.manual_seed(3)
    return torch.nn.Sequential(
        torch.nn.Conv1d(4, 4, 5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool1d(2),
        torch.nn.Conv1d(4, 3, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(3 * 6, 2),
    ).double()  # fmt: skip


def brute_force(model, x, target, args=()):
    """values[i, a, l] by running every mutant by hand; N columns get all four letters."""
    with torch.no_grad():
        base = model(x, *args)[:, target]
        values = torch.zeros_like(x)
        for i in range(x.shape[0]):
            for position in range(x.shape[2]):
                for letter in range(x.shape[1]):
                    if x[i, letter, position] == 1:
                        continue
                    mutated = x[i : i + 1].clone()
                    mutated[0, :, position] = 0
                    mutated[0, letter, position] = 1
                    values[i, letter, position] = model(mutated, *[a[i : i + 1] for a in args])[0, target] - base[i]
    return values


@pytest.mark.parametrize("fast", [True, False])
def test_n_positions_get_all_four_letters_against_the_n_reference(fast):
    # oracle: brute force; an N (all-zero column) is substituted by each letter, the reference keeps the N
    model = small_cnn()
    x = one_hot(torch.randint(0, 4, (2, 12)))
    x[0, :, 3] = 0
    x[1, :, 11] = 0
    result = ism(model, x, target=1, fast=fast)
    torch.testing.assert_close(result.values, brute_force(model, x, 1), rtol=1e-10, atol=1e-12)
    assert bool((result.values[0, :, 3] != 0).all())  # four real substitutions at the N
    assert result.options["fast"] is fast
    # position importance: minus the mean over the substitutions made there (4 at an N, 3 elsewhere)
    torch.testing.assert_close(result.diagnostics["position_importance"][0, 3], -result.values[0, :, 3].mean())
    torch.testing.assert_close(result.diagnostics["position_importance"][0, 4], -result.values[0, :, 4].sum() / 3)


def test_three_substitutions_per_position_and_one_reference_pass():
    # 3L + 1 rows per sequence (identity substitutions are never run), plus the one-row target probe
    model = Counting(small_cnn())
    x = one_hot(torch.randint(0, 4, (2, 12)))
    result = ism(model, x, target=0, fast=False)
    assert model.rows == 1 + 2 * (3 * 12 + 1)
    assert result.model_evaluations == model.rows


def test_start_end_window_mutates_only_the_span():
    model = small_cnn()
    x = one_hot(torch.randint(0, 4, (2, 12)))
    whole = ism(model, x, target=0)
    part = ism(model, x, target=0, start=4, end=9)
    torch.testing.assert_close(part.values[:, :, 4:9], whole.values[:, :, 4:9], rtol=1e-10, atol=1e-12)
    assert bool((part.values[:, :, :4] == 0).all()) and bool((part.values[:, :, 9:] == 0).all())
    assert (part.options["start"], part.options["end"]) == (4, 9)


def test_extra_arguments_follow_their_sequence():
    class Gated(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv1d(4, 2, 3, padding=1)

        def forward(self, x, control):
            return (torch.relu(self.conv(x)) * control).sum(2)

    torch.manual_seed(4)
    model = Gated().double()
    x = one_hot(torch.randint(0, 4, (3, 10)))
    control = torch.rand(3, 1, 10, dtype=torch.float64)
    for fast in (True, False):
        result = ism(model, x, target=1, args=(control,), fast=fast)
        torch.testing.assert_close(result.values, brute_force(model, x, 1, (control,)), rtol=1e-10, atol=1e-12)


def test_a_failed_check_falls_back_to_full_passes(monkeypatch):
    # a planning error is caught by the check batch: the numbers still come from full forward passes
    from deepscope.attribution import _ism_local

    run = _ism_local.LocalPlan.run
    monkeypatch.setattr(_ism_local.LocalPlan, "run", lambda self, *a: run(self, *a) + 1)
    model = small_cnn()
    x = one_hot(torch.randint(0, 4, (1, 12)))
    result = ism(model, x, target=0)
    assert result.options["fast"] is False and "check failed" in result.diagnostics["path"]
    torch.testing.assert_close(result.values, brute_force(model, x, 0), rtol=1e-10, atol=1e-12)


def test_bpnet_count_and_profile_heads_equal_tangermeme():
    # oracle: tangermeme 1.6's saturation_mutagenesis (raw outputs) on a bpnet-lite BPNet with control
    # tracks; float32, the window convolutions sum in another order: 1e-5 of the largest output
    pytest.importorskip("tangermeme")
    bpnetlite = pytest.importorskip("bpnetlite")
    from tangermeme.saturation_mutagenesis import saturation_mutagenesis

    torch.manual_seed(0)
    model = bpnetlite.BPNet(n_filters=8, n_layers=3, n_control_tracks=2, verbose=False).eval()
    x = one_hot(torch.randint(0, 4, (2, 140))).float()
    x[1, :, 70] = 0
    control = torch.rand(2, 2, 140)
    heads = {"count": lambda out: out[1], "profile": lambda out: out[0].flatten(1)}
    for name, head in heads.items():
        y0, y_hat = saturation_mutagenesis(
            model, x, args=(control,), raw_outputs=True, device="cpu", func=head, start=20, end=120
        )
        targets = [[0], [5]] if name == "profile" else 0
        result = ism(model, x, target=targets, args=(control,), output_fn=head, start=20, end=120)
        assert result.options["fast"], name
        columns = [0, 5] if name == "profile" else [0]
        for k, column in enumerate(columns):
            expected = (y_hat[..., column] - y0[:, None, None, column]) * (1 - x[:, :, 20:120])
            got = result.values[k] if name == "profile" else result.values
            scale = float(expected.abs().max())
            torch.testing.assert_close(got[:, :, 20:120], expected, rtol=0, atol=1e-5 * scale)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"start": 5, "end": 3}, "start/end"),
        ({"end": 13}, "start/end"),
        ({"start": 1.5}, "start"),
        ({"args": torch.zeros(2, 1, 12)}, "args"),
        ({"args": (torch.zeros(3, 1, 12),)}, "batch"),
        ({"fast": "yes"}, "fast"),
    ],
)
def test_bad_options_are_refused(kwargs, match):
    from deepscope.errors import InvalidParameterError

    with pytest.raises(InvalidParameterError, match=match):
        ism(small_cnn(), one_hot(torch.randint(0, 4, (2, 12))), target=0, **kwargs)


def test_the_callers_sequences_survive_an_in_place_first_layer():
    class Doubling(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv1d(4, 2, 3, padding=1)

        def forward(self, x):
            return torch.relu(self.conv(x.mul_(2))).sum(2)

    torch.manual_seed(5)
    model = Doubling().double()
    x = one_hot(torch.randint(0, 4, (2, 9)))
    kept = x.clone()
    result = ism(model, x, target=0)
    assert torch.equal(x, kept)
    torch.testing.assert_close(result.values, brute_force(lambda v: Doubling.forward(model, v.clone()), x, 0))


def test_basset_takes_the_receptive_field_path_with_the_numbers_of_full_passes():
    # oracle: the same call with fast=False (every mutant through the whole network); float64, so the
    # only difference is summation order inside the window convolutions (~1e-15 relative)
    from deepscope.models import Basset

    torch.manual_seed(6)
    model = Basset((4, 200), 3, channels=(8, 6, 6), hidden=(16,)).double().eval()
    x = one_hot(torch.randint(0, 4, (2, 200)))
    x[1, :, 150] = 0
    fast = ism(model, x, target=[[0], [2]])
    full = ism(model, x, target=[[0], [2]], fast=False)
    assert fast.diagnostics["path"] == "receptive field" and full.diagnostics["path"] == "full forward passes"
    torch.testing.assert_close(fast.values, full.values, rtol=1e-9, atol=1e-12)


def test_the_models_hooks_never_see_tracing_proxies():
    # the receptive-field path traces model.forward; hooks on the model only ever get real tensors
    model = small_cnn()
    seen = []
    handle = model.register_forward_pre_hook(lambda module, inputs: seen.append(type(inputs[0])))
    try:
        result = ism(model, one_hot(torch.randint(0, 4, (2, 12))), target=0)
    finally:
        handle.remove()
    assert result.options["fast"] and seen and set(seen) == {torch.Tensor}
