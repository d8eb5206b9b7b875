"""DeepLIFT-SHAP against tangermeme.deep_lift_shap with the same references (bpnet-lite BPNet count and
profile heads, control tracks, a Basset CNN, N positions), and against deeplift averaged by hand."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from deepscope.attribution import deeplift
from deepscope.attribution.deep_lift_shap import deep_lift_shap
from deepscope.data.shuffle import dinucleotide_shuffle
from deepscope.errors import InvalidParameterError
from deepscope.models.basset import Basset


def _sequences(batch: int, length: int, seed: int) -> torch.Tensor:
    codes = torch.randint(0, 4, (batch, length), generator=torch.Generator().manual_seed(seed))
    x = F.one_hot(codes, 4).permute(0, 2, 1).double()
    x[1, :, 20:26] = 0.0  # a run of N
    return x


def _tangermeme(model, x, references, **options):
    from tangermeme.deep_lift_shap import deep_lift_shap as theirs

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # only_warn: tangermeme warns on N columns, which it accepts
        return theirs(model, x, references=references, device="cpu", only_warn=True, **options)


def _bpnet(control_tracks: int = 0) -> nn.Module:
    from bpnetlite import BPNet

    torch.manual_seed(0)
    return BPNet(n_filters=8, n_layers=3, n_control_tracks=control_tracks, verbose=False).double().eval()


# Tolerance: the same multipliers computed in float64 by two implementations; values are ~1e-3, the
# differences measured ~1e-18 (rounding in a different order), so 1e-12 absolute leaves room only for
# rounding, not for a different rule.
_CLOSE = {"rtol": 0.0, "atol": 1e-12}


@pytest.mark.parametrize("hypothetical", [False, True])
def test_bpnet_count_head_matches_tangermeme(hypothetical):
    from bpnetlite.bpnet import CountWrapper

    model = CountWrapper(_bpnet())
    x = _sequences(3, 160, 0)
    references = dinucleotide_shuffle(x, n_shuffles=4, seed=1)
    ours = deep_lift_shap(model, x, target=0, references=references, hypothetical=hypothetical)
    theirs = _tangermeme(model, x, references, target=0, hypothetical=hypothetical)
    torch.testing.assert_close(ours.values, theirs, **_CLOSE)
    assert ours.diagnostics["convergence_delta"].max() < 1e-12
    if not hypothetical:
        assert ours.diagnostics["completeness_error"].max() < 1e-9
        assert (ours.values[1, :, 20:26] == 0).all()  # N positions: nothing to attribute


def test_bpnet_profile_head_matches_bpnet_lite_and_is_complete_with_the_softmax_rule():
    from bpnetlite.bpnet import ProfileWrapper, _ProfileLogitScaling
    from tangermeme.deep_lift_shap import _nonlinear

    model = ProfileWrapper(_bpnet())
    x = _sequences(2, 160, 2)
    references = dinucleotide_shuffle(x, n_shuffles=3, seed=2)
    # bpnet-lite's attribute.deep_lift_shap gives the logits·softmax(logits) module the rescale rule
    ours = deep_lift_shap(model, x, target=0, references=references, rescale_modules=(_ProfileLogitScaling,))
    theirs = _tangermeme(model, x, references, target=0, additional_nonlinear_ops={_ProfileLogitScaling: _nonlinear})
    torch.testing.assert_close(ours.values, theirs, **_CLOSE)
    # without it: the softmax rule and the midpoint product rule, also exact
    own = deep_lift_shap(model, x, target=0, references=references)
    assert own.diagnostics["completeness_error"].max() < 1e-9
    torch.testing.assert_close(own.diagnostics["delta"], ours.diagnostics["delta"], rtol=0, atol=0)


def test_control_tracks_are_held_fixed_as_in_tangermeme():
    from bpnetlite.bpnet import CountWrapper

    model = CountWrapper(_bpnet(control_tracks=2))
    x = _sequences(3, 160, 3)
    control = torch.rand(3, 2, 160, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    references = dinucleotide_shuffle(x, n_shuffles=3, seed=3)
    ours = deep_lift_shap(model, x, target=0, references=references, args=(control,), max_batch=4)
    theirs = _tangermeme(model, x, references, target=0, args=(control,))
    torch.testing.assert_close(ours.values, theirs, **_CLOSE)
    # the model itself, its count head picked by output_fn (the graph is pruned to that head)
    picked = deep_lift_shap(model.model, x, target=0, references=references, args=(control,), output_fn=lambda o: o[1])
    torch.testing.assert_close(picked.values, ours.values, rtol=0, atol=0)
    computed = deep_lift_shap(  # an output_fn that computes is applied to the outputs instead
        model.model, x, target=0, references=references, args=(control,), output_fn=lambda o: o[1] * 2.0
    )
    torch.testing.assert_close(computed.values, 2.0 * ours.values, rtol=1e-12, atol=1e-15)


def test_basset_cnn_matches_tangermeme():
    torch.manual_seed(1)
    model = Basset((4, 120), 3, kernel_sizes=(9, 5, 3), pools=(3, 2, 2)).double().eval()
    x = _sequences(3, 120, 5)
    references = dinucleotide_shuffle(x, n_shuffles=4, seed=4)
    ours = deep_lift_shap(model, x, target=2, references=references)
    theirs = _tangermeme(model, x, references, target=2)
    torch.testing.assert_close(ours.values, theirs, **_CLOSE)


def test_default_references_are_seeded_dinucleotide_shuffles():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv1d(4, 3, 5), nn.ReLU(), nn.AdaptiveMaxPool1d(1), nn.Flatten(), nn.Linear(3, 2))
    x = _sequences(3, 30, 6).float()
    got = deep_lift_shap(model, x, target=[[0], [1]], n_shuffles=6, seed=9)
    want = deep_lift_shap(model, x, target=[[0], [1]], references=dinucleotide_shuffle(x, 6, seed=9))
    torch.testing.assert_close(got.values, want.values, rtol=0, atol=0)
    assert got.values.shape == (2, 3, 4, 30) and got.options["n_shuffles"] == 6
    assert got.diagnostics["completeness_error"].max() < 1e-4  # float32 sums of ~100 terms


def test_other_inputs_average_deeplift_over_shared_references(mlp_and_rows):
    model, rows = mlp_and_rows
    background = torch.randn(5, rows.shape[1], generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    got = deep_lift_shap(model, rows, target=1, references=background, max_batch=7)  # one example per chunk
    want = torch.stack([deeplift(model, rows, target=1, baseline=r).values for r in background]).mean(0)
    torch.testing.assert_close(got.values, want, rtol=1e-12, atol=1e-14)
    assert got.model_evaluations == 1 + rows.shape[0] * 6  # the target probe, then x once and 5 references


def test_bad_references_and_options_are_named(mlp_and_rows):
    model, rows = mlp_and_rows
    # other inputs: one zero reference by default, i.e. DeepLIFT with its default baseline
    torch.testing.assert_close(deep_lift_shap(model, rows, target=0).values, deeplift(model, rows, target=0).values)
    with pytest.raises(InvalidParameterError, match="'references' parameter of deep_lift_shap"):
        deep_lift_shap(model, rows, target=0, references=torch.zeros(3, 2))
    with pytest.raises(InvalidParameterError, match="'hypothetical' parameter"):
        deep_lift_shap(model, rows, target=0, references=rows[:2], hypothetical=True)
    with pytest.raises(InvalidParameterError, match="'args' parameter"):
        deep_lift_shap(model, rows, target=0, references=rows[:2], args=(rows[:3],))
