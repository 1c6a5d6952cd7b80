"""Device selection shared by the API and the CLI."""

from __future__ import annotations

import torch

from qtomo.errors import QtomoError


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
