"""Refuse a requested size that cannot fit in memory, before anything is allocated.

A parameter such as ``steps``, ``samples`` or ``n_samples`` multiplies into one tensor of
``value × per_item`` elements (e.g. ``samples`` noisy copies of the whole batch). When that
tensor alone is larger than the device's whole memory (physical RAM for the CPU, the GPU's total
memory for CUDA), no run can succeed, and the raw error would be an allocator message
("DefaultCPUAllocator: can't allocate memory: you tried to allocate 32000000000000 bytes") that
names no parameter. :func:`check_allocation` raises an :class:`InvalidParameterError` naming the
parameter, the size it asked for and the memory there is. Sizes that fit are left alone (the
check never refuses a run that could succeed on an idle machine).

Example:
    >>> import torch
    >>> check_allocation(8, 4 * 3, torch.float32, "cpu", name="samples", owner="smoothgrad")
    >>> try:
    ...     check_allocation(10**15, 4 * 3, torch.float32, "cpu", name="samples", owner="smoothgrad")
    ... except InvalidParameterError as error:
    ...     print(str(error)[:57])
    The 'samples' parameter of smoothgrad asks for 1e+15 x 12
"""

from __future__ import annotations

import os

import torch

from deepscope.errors import InvalidParameterError

__all__ = ["check_allocation", "device_memory"]


def device_memory(device: torch.device | str) -> int | None:
    """Total memory in bytes of ``device`` (physical RAM for the CPU), or None when unknown."""
    device = torch.device(device)
    if device.type == "cuda":
        try:
            return int(torch.cuda.get_device_properties(device).total_memory)
        except (RuntimeError, AssertionError, AttributeError):  # no CUDA build or no such device
            return None
    if device.type == "cpu":
        try:
            return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
        except (AttributeError, ValueError, OSError):  # not a POSIX system
            return None
    return None


def _bytes(count: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= size:
            return f"{count / size:.3g} {unit}"
    return f"{count:.0f} bytes"


def check_allocation(
    value: int,
    per_item: int,
    dtype: torch.dtype,
    device: torch.device | str,
    *,
    name: str,
    owner: str,
) -> None:
    """Raise when ``value × per_item`` elements of ``dtype`` exceed the total memory of ``device``.

    Args:
        value: the requested size (already checked to be an int).
        per_item: elements allocated per unit of ``value`` (e.g. the batch's ``numel()``).
        dtype: dtype of the allocation; device: where it would live.
        name, owner: the parameter and the function, for the message.

    Raises:
        InvalidParameterError: the one tensor alone would be larger than the device's memory.
    """
    total = device_memory(device)
    itemsize = torch.empty((), dtype=dtype).element_size()
    needed = float(value) * float(max(per_item, 1)) * itemsize
    if total is None or needed <= total:
        return
    raise InvalidParameterError(
        f"The '{name}' parameter of {owner} asks for {float(value):.3g} x {per_item} values of {dtype} "
        f"({_bytes(needed)}), more than the {_bytes(total)} of memory of the {torch.device(device).type} device. "
        f"Got {name}={value}; ask for fewer (the work can also be split over several calls)."
    )
