"""Devices: a device name is checked before anything is placed there, and a model's ``cfg.device``
always says where its weights are."""

from __future__ import annotations

from typing import Any

import torch


def check_device(device: Any, argument: str = "device") -> torch.device:
    """``torch.device(device)`` if this machine has it, else a ValueError naming ``argument``."""
    if isinstance(device, torch.device):
        device = str(device)
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"{argument}: {device!r} is not a device name (expected e.g. 'cpu', 'cuda', 'cuda:1')") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            build = "" if torch.version.cuda else " (this torch is a CPU-only build)"
            raise ValueError(f"{argument}: {device!r}: CUDA is not available on this machine{build}")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"{argument}: {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"{argument}: {device!r}: MPS is not available on this machine")
    elif dev.type not in ("cpu", "meta"):
        backend = getattr(torch, dev.type, None)
        is_available = getattr(backend, "is_available", None)
        if not callable(is_available) or not is_available():
            raise ValueError(f"{argument}: {device!r} is not available on this machine")
    return dev
