"""The expressivity section's zoomed exact partition (deepscope/expressivity/_report_regions.py)."""

import time

import pytest
import torch
from torch import nn

import deepscope.expressivity._report_regions as module
from deepscope.errors import DeepscopeError
from deepscope.expressivity.regions import linear_regions
from deepscope.testing import make_fixture


def test_plane_points_take_three_different_classes_when_there_are():
    inputs = torch.arange(12.0).reshape(6, 2)
    # exact: the first example of each new label, in order (rows 0, 2, 4)
    assert torch.equal(module.plane_points(inputs, torch.tensor([0, 0, 1, 1, 2, 2])), inputs[[0, 2, 4]])
    # two classes only: the first three rows
    assert torch.equal(module.plane_points(inputs, torch.tensor([0, 1, 0, 1, 0, 1])), inputs[:3])


def test_plane_square_is_the_default_domain_of_linear_regions():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 2)).double()
    plane = torch.randn(3, 3, dtype=torch.float64)
    # oracle: linear_regions without bounds partitions exactly this square
    assert tuple(linear_regions(model, plane=plane).bounds) == pytest.approx(module.plane_square(plane), abs=0)


def test_zoomed_partition_without_zoom_is_the_plain_partition():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 3)).double()
    inputs, targets = torch.randn(12, 3, dtype=torch.float64), torch.tensor([0, 1, 2] * 4)
    budget = {"max_regions": 5000, "zooms": 3}
    blocks, results, sentence, result = module.zoomed_partition(model, inputs, targets, budget)
    plain = linear_regions(model, inputs, plane=inputs[:3], max_regions=5000)  # the three classes: rows 0, 1, 2
    assert results["zoom"] == 1.0 and results["count"] == result.count == plain.count
    assert f"has {plain.count} linear regions" in sentence
    assert len(blocks) == 3 and blocks[1].svg.startswith("<svg")


def test_the_zoom_stops_when_a_retry_would_pass_its_time(monkeypatch):
    # oracle: every try hits the region cap; with the deadline already passed there is exactly one try
    # and None (the block then declines in one line), without a deadline all the budget's zooms run
    tries = []

    def always_over(*args, **kwargs):
        tries.append(kwargs["max_regions"])
        raise DeepscopeError("the partition would exceed max_regions")

    monkeypatch.setattr(module, "linear_regions", always_over)
    fixture = make_fixture("relu_mlp")
    inputs, targets = fixture.problem().tensors("train", max_samples=16)
    budget = {"max_regions": 100, "zooms": 5}
    assert module.zoomed_partition(None, inputs, targets, budget, 1.0, deadline=time.perf_counter() - 1) is None
    assert tries == [100]
    tries.clear()
    with pytest.raises(DeepscopeError, match="max_regions"):
        module.zoomed_partition(None, inputs, targets, budget, 1.0)
    assert len(tries) == budget["zooms"]
