"""Where local models run: the device a name means, torch's thread count, batches moved to a device."""

from __future__ import annotations

import os

import torch


def resolve_device(name: str) -> torch.device:
    """``auto``: cuda when available, else cpu; otherwise the named device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def set_threads() -> None:
    """The cores (or FLYWHEEL_TORCH_THREADS: fewer helps on a machine shared with others) shared
    among the processes of this node (LOCAL_WORLD_SIZE, set by torchrun), one torch thread each."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    threads = int(os.environ.get("FLYWHEEL_TORCH_THREADS") or cores)
    torch.set_num_threads(max(1, threads // int(os.environ.get("LOCAL_WORLD_SIZE", 1))))


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}
