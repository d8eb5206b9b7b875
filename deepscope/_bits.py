"""Bit-exact tensor comparison and copies: what model_guard uses to know a model is unchanged.

Two tensors are the same when they have the same shape, dtype, device and bits — NaN payloads and
the sign of zero included (``torch.equal`` says ``nan != nan`` and ``0.0 == -0.0``). Floating and
complex tensors are compared through an integer view of the same width, so the comparison is
bitwise. :class:`_BitCopies` keeps copies of many small tensors in one flat buffer per (dtype,
device), so checking a whole model costs two kernel calls instead of two per tensor.

Example:
    >>> a = torch.tensor([float("nan"), 0.0])
    >>> bitwise_equal(a, a.clone()), bitwise_equal(a, torch.tensor([float("nan"), -0.0]))
    (True, False)
"""

from __future__ import annotations

import numpy as np
import torch

try:  # the C++ flatten behind DDP's bucketing: one call instead of a Python loop of reshapes
    from torch._utils import _flatten_dense_tensors
except ImportError:  # pragma: no cover - older or future torch without it

    def _flatten_dense_tensors(tensors: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([t.reshape(-1) for t in tensors])


__all__ = ["bitwise_equal"]

_SAME_SIZE_INTEGER = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64, 16: torch.int64}
_SPARSE_LAYOUTS = {torch.sparse_coo, torch.sparse_csr, torch.sparse_csc, torch.sparse_bsr, torch.sparse_bsc}
_QUANTIZED = {torch.qint8, torch.quint8, torch.qint32, torch.quint4x2, torch.quint2x4}


def _as_bits(tensor: torch.Tensor) -> torch.Tensor:
    """A contiguous tensor's bits as integers of the same width (integer compare is bitwise)."""
    if tensor.is_floating_point() or tensor.is_complex():
        return tensor.view(_SAME_SIZE_INTEGER[tensor.element_size()])
    return tensor


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bitwise equality of two contiguous tensors of one shape, dtype and device.

    On CPU the comparison goes through numpy, which is several times faster than ``torch.equal``
    on small tensors.
    """
    a, b = _as_bits(a), _as_bits(b)
    if a.device.type == "cpu" and a.dtype is not torch.bool:
        return bool(np.array_equal(a.numpy(), b.numpy()))
    return bool(torch.equal(a, b))


def bitwise_equal(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    """True when two tensors have the same shape, dtype, device, layout and bits (NaN payloads included).

    Sparse tensors (the gradient of ``nn.Embedding(sparse=True)``) have no ``torch.equal``; they are
    compared as the dense tensors they stand for. Meta tensors hold no data: equal metadata is equality.
    """
    if a is None or b is None:
        return a is None and b is None
    if a.shape != b.shape or a.dtype != b.dtype or a.device != b.device or a.layout != b.layout:
        return False
    if a.is_sparse or a.layout in _SPARSE_LAYOUTS:
        return bitwise_equal(a.detach().to_dense(), b.detach().to_dense())
    if a.device.type == "meta":  # no data: the metadata compared above is all there is (torch.equal has no meta kernel)
        return True
    if a.layout is not torch.strided or a.dtype in _QUANTIZED:
        return bool(torch.equal(a.detach(), b.detach()))
    return _same_bits(a.detach().contiguous(), b.detach().contiguous())


def _flatten(tensors: list[torch.Tensor], *, copy: bool) -> torch.Tensor:
    """The given tensors' elements one after another in a contiguous 1-D tensor; with ``copy``
    always new memory (for one tensor the flatten alone may return a view of it)."""
    flat = _flatten_dense_tensors(tensors)
    return flat.clone() if copy and len(tensors) == 1 else flat


# Tensors up to this many elements are copied and compared together, one flat buffer per
# (dtype, device): two kernel calls instead of two per tensor. Larger ones are handled one by
# one (the per-call overhead is negligible there, and no model-sized temporary is made).
_FLAT_MAX_ELEMENTS = 1 << 16


class _BitCopies:
    """Bit-exact copies of a list of tensors, with a fast "is everything still the same?" check.

    Used under ``torch.no_grad()`` (parameters, buffers and grads are read, never recorded).
    """

    def __init__(self, tensors: list[torch.Tensor]) -> None:
        self.meta = [(t.shape, t.dtype, t.device, t.layout) for t in tensors]
        self.shapes = [(shape, dtype) for shape, dtype, _, _ in self.meta]
        self.copies: list[torch.Tensor | None] = [None] * len(tensors)
        self.places: dict[int, tuple[torch.Tensor, int]] = {}  # index -> (group buffer, offset)
        groups: dict[tuple[torch.dtype, torch.device], list[int]] = {}
        for index, (shape, dtype, device, layout) in enumerate(self.meta):
            flat = (
                layout is torch.strided
                and dtype not in _QUANTIZED
                and device.type != "meta"
                and shape.numel() <= _FLAT_MAX_ELEMENTS
            )
            if flat:
                groups.setdefault((dtype, device), []).append(index)
            else:
                self.copies[index] = tensors[index].detach().clone()
        self.groups: list[tuple[list[int], torch.Tensor]] = []
        for indices in groups.values():
            buffer = _flatten([tensors[i] for i in indices], copy=True)
            self.groups.append((indices, buffer))
            offset = 0
            for i in indices:
                self.places[i] = (buffer, offset)
                offset += self.meta[i][0].numel()

    def saved(self, index: int) -> torch.Tensor:
        """The saved copy of tensor ``index`` (a view into its group's buffer for small tensors)."""
        if index not in self.places:
            return self.copies[index]
        buffer, offset = self.places[index]
        shape = self.meta[index][0]
        return buffer[offset : offset + shape.numel()].view(shape)

    def unchanged(self, tensors: list[torch.Tensor]) -> bool:
        """True when every tensor has the saved shape, dtype, device and bits.

        Conservative: any doubt (a tensor moved to another device or layout makes the flatten or the
        compare fail) answers False, and the caller then checks and restores tensor by tensor.
        """
        if [(t.shape, t.dtype) for t in tensors] != self.shapes:
            return False
        try:
            for indices, buffer in self.groups:
                if not _same_bits(_flatten([tensors[i] for i in indices], copy=False), buffer):
                    return False
            return all(
                bitwise_equal(tensor, self.copies[i]) for i, tensor in enumerate(tensors) if i not in self.places
            )
        except (RuntimeError, TypeError, ValueError):
            return False

    def restore_into(self, index: int, tensor: torch.Tensor) -> torch.Tensor | None:
        """Put the saved bits back into ``tensor`` in place; return a fresh copy when that is impossible."""
        saved = self.saved(index)
        if bitwise_equal(tensor, saved):
            return None
        if tensor.shape == saved.shape and tensor.dtype == saved.dtype and tensor.device == saved.device:
            tensor.copy_(saved)
            return None
        return saved.clone()  # never hand out a view into a shared buffer
