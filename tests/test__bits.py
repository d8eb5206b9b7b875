"""Bit-exact comparison and copies (what model_guard relies on): NaN payloads and signed zeros count."""

from __future__ import annotations

import torch

from deepscope._bits import _FLAT_MAX_ELEMENTS, _BitCopies, bitwise_equal


def test_bitwise_equal_sees_what_torch_equal_does_not():
    nan = torch.tensor([float("nan"), 1.0])
    assert bitwise_equal(nan, nan.clone()) and not torch.equal(nan, nan.clone())
    assert not bitwise_equal(torch.tensor([0.0]), torch.tensor([-0.0]))
    other_payload = nan.view(torch.int32).clone()
    other_payload[0] += 1  # still a NaN, a different one
    assert not bitwise_equal(nan, other_payload.view(torch.float32))


def test_bitwise_equal_compares_metadata_and_odd_layouts():
    a = torch.arange(6.0).reshape(2, 3)
    assert bitwise_equal(a.t(), a.t().contiguous())  # strides do not matter, values do
    assert not bitwise_equal(a, a.double()) and not bitwise_equal(a, a.reshape(3, 2))
    assert bitwise_equal(None, None) and not bitwise_equal(a, None)
    assert bitwise_equal(torch.tensor([True, False]), torch.tensor([True, False]))
    assert bitwise_equal(torch.complex(a, a), torch.complex(a, a))
    sparse = a.to_sparse()
    assert bitwise_equal(sparse, a.to_sparse())
    assert bitwise_equal(torch.empty(2, device="meta"), torch.empty(2, device="meta"))


def test_bit_copies_detect_and_restore_changes_in_place():
    tensors = [torch.randn(3, 4), torch.arange(5), torch.randn(_FLAT_MAX_ELEMENTS + 1), torch.randn(2).double()]
    copies = _BitCopies(tensors)
    assert copies.unchanged(tensors)
    tensors[0][1, 2] = float("nan")
    tensors[2][0] += 1.0  # a large tensor, copied on its own
    assert not copies.unchanged(tensors)
    for index, tensor in enumerate(tensors):
        storage = tensor.data_ptr()
        assert copies.restore_into(index, tensor) is None and tensor.data_ptr() == storage
    assert copies.unchanged(tensors)


def test_a_tensor_that_changed_shape_gets_a_fresh_copy_not_a_view():
    tensors = [torch.randn(4), torch.randn(3)]
    copies = _BitCopies(tensors)
    grown = torch.randn(5)
    assert not copies.unchanged([grown, tensors[1]])
    fresh = copies.restore_into(0, grown)
    assert fresh is not None and fresh.shape == (4,) and bitwise_equal(fresh, copies.saved(0))
    fresh.zero_()  # the copy handed out is its own memory: the saved bits stay
    assert not bitwise_equal(fresh, copies.saved(0))


def test_sparse_tensors_compare_as_the_dense_tensors_they_stand_for():
    indices = torch.tensor([[0, 2]])
    a = torch.sparse_coo_tensor(indices, torch.tensor([1.0, 2.0]), (4,))
    assert bitwise_equal(a, a.clone()) and bitwise_equal(a, a.coalesce())
    assert not bitwise_equal(a, torch.sparse_coo_tensor(indices, torch.tensor([1.0, 3.0]), (4,)))
    assert not bitwise_equal(a, a.to_dense())  # a different layout is a different tensor
    csr = torch.eye(3).to_sparse_csr()
    assert bitwise_equal(csr, torch.eye(3).to_sparse_csr()) and not bitwise_equal(
        csr, (2 * torch.eye(3)).to_sparse_csr()
    )
