import torch

from deepscope.curvature._base import ParameterSpace, batches_of


def test_flatten_and_unflatten_are_inverse_and_slices_locate_parameters():
    params = {"a.weight": torch.randn(3, 2), "a.bias": torch.randn(3), "b": torch.randn(2, 2, 2)}
    space = ParameterSpace(params)
    vector = space.flatten(params)
    assert space.numel == 6 + 3 + 8 == vector.numel()
    for name, value in space.unflatten(vector).items():
        assert torch.equal(value, params[name])
    assert torch.equal(vector[space.slice_of("a.bias")], params["a.bias"])


def test_batches_of_covers_every_sample_once():
    x, y = torch.arange(10.0)[:, None], torch.arange(10)
    batches = list(batches_of(x, y, batch_size=4)())
    assert [len(b[0]) for b in batches] == [4, 4, 2]
    assert torch.equal(torch.cat([b[1] for b in batches]), y)
