"""Device selection shared by the API and the CLI, the memory a device has left, and the sums
over the rows of a batch and over the processes of a torchrun."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from qtomo.errors import QtomoError


def sum_over_ranks(*tensors: torch.Tensor, world: int) -> torch.Tensor:
    """Sum each tensor in place over the ``world`` processes of a torchrun (``all_reduce``;
    nothing with one process); returns the first."""
    if world > 1:
        for tensor in tensors:
            dist.all_reduce(tensor)
    return tensors[0]


def weighted_sum(values: torch.Tensor, counts: torch.Tensor | None) -> torch.Tensor:
    """Σ_n c_n values_n over the rows (first axis) of ``values`` (N, ...), each row standing
    for c_n equal rows (``counts`` (N,), any float dtype); c_n = 1 where ``counts`` is None."""
    return values.sum(0) if counts is None else counts.to(values.dtype) @ values


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``"auto"`` → CUDA when present, else CPU; otherwise the named device, checked to exist.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if isinstance(name, torch.device):
        name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise QtomoError(f"unknown device {name!r}; expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise QtomoError(f"device {name!r} requested but CUDA is not available here")
    if device.type not in ("cpu", "cuda"):
        raise QtomoError(f"unsupported device {name!r}; expected auto, cpu, cuda or cuda:N")
    return device


def available_memory(device: torch.device) -> int:
    """Bytes a new allocation can take on ``device`` now: the free memory of a CUDA device, or
    the kernel's estimate of what the CPU can allocate without swapping (``MemAvailable`` of
    /proc/meminfo; the free pages where that file does not exist).

    Example:
        >>> available_memory(torch.device("cpu")) > 0
        True
    """
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # the file counts kB
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
