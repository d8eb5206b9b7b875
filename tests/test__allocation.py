"""check_allocation: an absurd requested size is refused by name before anything is allocated."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deepscope._allocation import check_allocation, device_memory
from deepscope.errors import InvalidParameterError

HUGE = 10**12  # 10^12 samples of even a 2 x 4 batch is 32 TB in float32: more than any machine's RAM


def test_device_memory_is_the_machines_ram_on_the_cpu():
    import os

    expected = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert device_memory("cpu") == expected and expected > 2**26
    assert device_memory("meta") is None  # unknown: the check then never refuses


def test_sizes_that_fit_pass_and_the_boundary_is_the_total_memory():
    total = device_memory("cpu")
    check_allocation(total // 4, 1, torch.float32, "cpu", name="n", owner="f")  # exactly the memory: allowed
    with pytest.raises(InvalidParameterError):
        check_allocation(total // 4 + 1, 1, torch.float32, "cpu", name="n", owner="f")
    check_allocation(total // 8, 1, torch.float64, "cpu", name="n", owner="f")
    with pytest.raises(InvalidParameterError):
        check_allocation(total // 8 + 1, 1, torch.float64, "cpu", name="n", owner="f")  # the dtype's size counts


def test_the_message_names_the_parameter_the_size_and_the_memory():
    with pytest.raises(InvalidParameterError) as caught:
        check_allocation(HUGE, 8, torch.float32, "cpu", name="samples", owner="smoothgrad")
    message = str(caught.value)
    assert message.startswith(
        "The 'samples' parameter of smoothgrad asks for 1e+12 x 8 values of torch.float32 (32 TB)"
    )
    assert "of memory of the cpu device" in message and f"Got samples={HUGE}" in message


@pytest.fixture
def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).eval()


@pytest.mark.parametrize(
    ("name", "call"),
    [
        ("steps", lambda a, m, net, x: a.integrated_gradients(net, x, 0, steps=HUGE)),
        ("samples", lambda a, m, net, x: a.smoothgrad(net, x, 0, samples=HUGE)),
        ("samples", lambda a, m, net, x: a.expected_gradients(net, x, 0, references=torch.zeros(5, 4), samples=HUGE)),
        ("samples", lambda a, m, net, x: a.gradient_shap(net, x, 0, baselines=torch.zeros(5, 4), samples=HUGE)),
        ("n_samples", lambda a, m, net, x: m.infidelity(net, x, 0, n_samples=HUGE)),
    ],
)
def test_absurd_sizes_are_refused_by_name_not_by_the_allocator(net, name, call):
    import deepscope.attribution as attribution
    import deepscope.attribution.metrics as metrics

    x = torch.randn(2, 4)
    before = [p.detach().clone() for p in net.parameters()]
    with pytest.raises(InvalidParameterError, match=rf"^The '{name}' parameter of \w+ asks for 1e\+12 x"):
        call(attribution, metrics, net, x)
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))


@pytest.mark.parametrize("name", ["mnist1d", "planted_tabular", "planted_image", "planted_motifs"])
def test_a_dataset_of_absurd_size_is_refused_before_generating(name):
    # was: a raw numpy MemoryError (planted sets) or a generator running for hours (mnist1d)
    from deepscope.datasets import load

    with pytest.raises(InvalidParameterError, match=r"^The 'n_samples' parameter of .+ asks for 1e\+12 x 1 values"):
        load(name, n_samples=HUGE, cache=False) if name == "mnist1d" else load(name, n_samples=HUGE)
