"""The one place that knows about ranks: everything reads them from here, nothing keeps them in globals."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.distributed as dist

__all__ = ["rank", "local_rank", "world_size", "is_main", "is_distributed", "init_distributed", "barrier",
           "main_first", "cleanup"]


def rank() -> int:
    """Global rank (-1 when not launched by torchrun)."""
    return int(os.environ.get("RANK", -1))


def local_rank() -> int:
    """Rank on this machine (-1 when not launched by torchrun)."""
    return int(os.environ.get("LOCAL_RANK", -1))


def world_size() -> int:
    """Number of processes (1 when not distributed)."""
    return int(os.environ.get("WORLD_SIZE", 1))


def is_main() -> bool:
    """True in the process that writes files and prints (rank 0 or single process)."""
    return rank() in (-1, 0)


def is_distributed() -> bool:
    """True when a process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def init_distributed(device: torch.device) -> None:
    """Initialise the process group for torchrun: NCCL on CUDA, gloo on CPU."""
    if world_size() > 1 and not is_distributed():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)


def barrier() -> None:
    """Wait for all ranks (no-op when not distributed)."""
    if is_distributed():
        dist.barrier()


@contextmanager
def main_first() -> Iterator[None]:
    """Let rank 0 run the block first (e.g. to build a cache), then the others."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def broadcast_str(value: str) -> str:
    """Rank 0's ``value`` on every rank (unchanged when not distributed)."""
    if not is_distributed():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def cleanup() -> None:
    """Destroy the process group if one exists."""
    if is_distributed():
        dist.destroy_process_group()
