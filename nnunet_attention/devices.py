"""The device a command runs on: ``auto`` is CUDA where torch sees it, else the CPU."""

from __future__ import annotations

from .errors import UsageError

#: what ``-device`` accepts
DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(device: str) -> str:
    """``device`` as torch names it (``auto``: ``cuda`` if available, else ``cpu``); a :class:`UsageError` for
    ``cuda`` where torch sees no CUDA device."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("-device cuda was asked for but torch sees no CUDA device; use -device cpu")
    return device
