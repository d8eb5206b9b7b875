"""measures(): all families on the standard fixtures, unsupported layers listed, bad input refused."""

import math

import pytest
import torch
from torch import nn

from deepscope import Problem
from deepscope.errors import DeepscopeError, InvalidParameterError, UnsupportedModelError
from deepscope.generalization._measures import measures
from deepscope.testing import make_fixture


def test_all_families_on_the_cnn_fixture():
    result = measures(make_fixture("cnn").problem(), max_samples=16, sharpness_samples=2, bisection_steps=2)
    names = {row["name"] for row in result.rows()}
    for expected in ("path_norm", "spectral_margin_orig", "pac_bayes_mag_sigma", "fisher_rao_norm", "mean_alpha"):
        assert expected in names
    assert result.forward_passes > 0 and result.samples_used == 8
    assert "eval semantics" in result.note
    for row in result.rows():
        value, normalised = row["value"], row["normalised"]
        if math.isfinite(value) and value >= 0 and row["name"] in ("parameter_count", "l2_distance"):
            assert normalised == pytest.approx(math.sqrt(value / result.train_size))
    assert result.value("parameter_count") == sum(p.numel() for p in make_fixture("cnn").model.parameters())
    # the cost of every measure is recorded: a row's seconds is its computation's share of its family
    assert set(result.family_seconds) == {"norm", "margin", "sharpness", "gradient", "spectral"}
    for row in result.rows():
        assert 0 < row["seconds"] <= sum(result.family_seconds.values()) + 1e-9
    sharpness = sum({row["seconds"] for row in result.rows() if row["family"] == "sharpness"})
    assert sharpness <= result.family_seconds["sharpness"] + 1e-9  # the three searches, each counted once


def test_tanh_network_lists_the_activation():
    result = measures(make_fixture("mlp").problem(), families=("norm",), max_samples=16)
    assert any("Tanh" in entry for entry in result.unsupported_layers)
    assert math.isnan(result.value("path_norm"))


def test_bad_input():
    x, y = torch.randn(10, 3), torch.randint(0, 2, (10,))
    with pytest.raises(UnsupportedModelError, match="no Linear or Conv"):
        measures(Problem(nn.Sequential(nn.Flatten()), (torch.randn(10, 2), y)))
    with pytest.raises(UnsupportedModelError, match="classification"):
        measures(Problem(nn.Linear(3, 1), (x, torch.randn(10, 1)), loss="mse"))
    with pytest.raises(InvalidParameterError, match="families"):
        measures(Problem(nn.Linear(3, 2), (x, y)), families=("bogus",))
    with pytest.raises(DeepscopeError, match="Labels"):
        Problem(nn.Linear(3, 2), (x, y + 5))


def test_residual_network_folds_every_batchnorm():
    from deepscope.generalization._measures._folding import discover_layers
    from deepscope.models import build

    model = build("resnet", (1, 8, 8), 3)
    x, y = torch.randn(24, 1, 8, 8), torch.randint(0, 3, (24,))
    init = {k: v.clone() for k, v in model.state_dict().items()}  # distance 0: log-distances are −inf, not errors
    result = measures(Problem(model, (x, y), init_state=init), families=("norm", "margin"), max_samples=24)
    assert result.unsupported_layers == []
    structure = discover_layers(model.eval(), x[:2])
    batchnorms = [name for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    assert sorted(layer.batchnorm for layer in structure.layers if layer.batchnorm) == sorted(batchnorms)
    assert result.value("frobenius_distance") == 0.0 and math.isfinite(result.value("log_product_spectral"))


def test_every_row_records_its_passes_and_the_totals_add_up():
    result = measures(make_fixture("cnn").problem(), max_samples=16, sharpness_samples=2, bisection_steps=2)
    rows = result.rows()
    assert all(row["forward_passes"] is not None and row["backward_passes"] is not None for row in rows)
    # the searches carry their own passes; every other row carries its family's (shared by the family)
    searches = {row["note"]: row for row in rows if row["name"] in ("pac_bayes_sigma", "pac_bayes_mag_sigma")}
    assert all(row["backward_passes"] == 0 and row["forward_passes"] > 0 for row in searches.values())
    gradient = [row for row in rows if row["family"] == "gradient"]
    # jvp + per-example gradients + the two timed examples of the cost prediction
    assert {row["backward_passes"] for row in gradient} == {2 * result.samples_used + 2}
    by_family = {}
    for row in rows:
        by_family.setdefault(row["family"], set()).add((row["forward_passes"], row["backward_passes"]))
    total_backward = sum(b for family in ("gradient",) for _, b in by_family[family]) + sum(
        {row["backward_passes"] for row in rows if row["name"] == "worst_case_sharpness_alpha"}
    )
    assert result.backward_passes == total_backward
    assert result.declined == {}


def test_a_family_over_its_predicted_budget_is_declined_with_its_rows():
    problem = make_fixture("cnn").problem()
    ran = measures(problem, max_samples=16, sharpness_samples=2, bisection_steps=2, families=("sharpness", "gradient"))
    declined = measures(problem, max_samples=16, families=("sharpness", "gradient"), max_family_seconds=1e-9)
    assert set(declined.declined) == {"sharpness", "gradient"}
    assert [row["name"] for row in declined.rows()] == [row["name"] for row in ran.rows()]  # same rows, NaN
    for row in declined.rows():
        assert math.isnan(row["value"]) and row["note"].startswith("declined: predicted up to")
        assert "max_family_seconds=1e-09" in row["note"] and row["forward_passes"] == 0
    # spent: the timed clean pass and the two timed examples of the gradient prediction
    assert (declined.forward_passes, declined.backward_passes) == (declined.samples_used + 2, 2)
    with pytest.raises(InvalidParameterError, match="max_family_seconds"):
        measures(problem, max_family_seconds=0)
    with pytest.raises(InvalidParameterError, match="chunk_size"):
        measures(problem, chunk_size=0)


def test_the_gradient_noise_shrinks_to_fit_its_budget_before_declining(monkeypatch):
    """With one example's gradient timed at 1 s and the jvp's passes at 0 s (both patched, so the test
    does not depend on the machine), a 20 s budget affords 20 per-example gradients; 10 s affords
    fewer than the minimum 16, so the family is declined."""
    from deepscope.generalization._measures import _context, table

    monkeypatch.setattr(table, "example_gradient_seconds", lambda ctx: 1.0)
    monkeypatch.setattr(_context.MeasureContext, "clean_seconds", lambda self: 0.0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    problem = Problem(model, (torch.randn(64, 4), torch.randint(0, 3, (64,))))
    fitted = measures(problem, families=("gradient",), max_family_seconds=20)
    note = next(m.note for m in fitted.measures if m.name == "gradient_noise")
    assert note.startswith("20 examples, s.e. ≈ ") and fitted.declined == {}
    full = measures(problem, families=("gradient",), max_family_seconds=None)
    assert next(m.note for m in full.measures if m.name == "gradient_noise").startswith("64 examples")
    declined = measures(problem, families=("gradient",), max_family_seconds=10)
    assert "16 per-example gradients at 1 s each" in declined.declined["gradient"]
